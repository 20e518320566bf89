// device_buffer, symmetric memory and window, device communicator: the allocations behind
// unique_handle, and the destroy call of each.
#include <cuda_runtime_api.h>

#include <cstring>
#include <utility>

#include "epgraph/comm/device_buffer.hpp"
#include "epgraph/comm/device_comm.hpp"
#include "epgraph/comm/error.hpp"
#include "epgraph/comm/symmetric_window.hpp"

namespace epgraph::comm {

device_buffer::device_buffer(std::size_t bytes) {
  device_memory m{nullptr, bytes};
  if (bytes) EPG_CHECK_CUDA(cudaMalloc(&m.ptr, bytes));
  memory_ = unique_handle<device_memory_traits>(m);
}

void symmetric_memory_traits::destroy(const value_type& m) noexcept { EPG_REPORT_NCCL(ncclMemFree(m.ptr)); }

symmetric_memory::symmetric_memory(std::size_t bytes) {
  symmetric_memory_traits::value_type m{nullptr, bytes};
  EPG_CHECK_NCCL(ncclMemAlloc(&m.ptr, bytes));
  memory_ = unique_handle<symmetric_memory_traits>(m);
}

void window_registration_traits::destroy(const value_type& r) noexcept {
  EPG_REPORT_NCCL(ncclCommWindowDeregister(r.comm, r.window));
}

symmetric_window::symmetric_window(nccl_comm_ref comm, symmetric_memory memory) : memory_(std::move(memory)) {
  // On failure memory_ is destroyed with this object, freeing the allocation.
  window_registration_traits::value_type r{comm.get(), nullptr};
  EPG_CHECK_NCCL(ncclCommWindowRegister(r.comm, memory_.get(), memory_.bytes(), &r.window, NCCL_WIN_COLL_SYMMETRIC));
  registration_ = unique_handle<window_registration_traits>(r);
}

void symmetric_window::leak() noexcept {
  (void)registration_.release();
  (void)memory_.release();
}

void device_comm_traits::destroy(value_type& d) noexcept { EPG_REPORT_NCCL(ncclDevCommDestroy(d.comm, &d.dev)); }

device_comm::device_comm(nccl_comm_ref comm, int lsa_barrier_count) {
  device_comm_traits::value_type d;
  d.comm = comm.get();
  d.barriers = lsa_barrier_count;
  ncclDevCommRequirements req;
  std::memset(&req, 0, sizeof req);  // 2.28 has no initializer macro; zero means "none"
  req.lsaBarrierCount = lsa_barrier_count;
  req.lsaMultimem = false;  // NVLink multicast stays off (it can take shared hosts down)
  const ncclResult_t made = ncclDevCommCreate(d.comm, &req, &d.dev);
  if (made != ncclSuccess) {
    throw error(error_domain::nccl, "ncclDevCommCreate", static_cast<int>(made), ncclGetErrorString(made),
                "the communicator may lack symmetric-memory (LSA) support: all ranks must be GPUs of one "
                "NVLink domain with CUDA VMM; run with NCCL_DEBUG=WARN for the cause");
  }
  handle_ = unique_handle<device_comm_traits>(d);
}

}  // namespace epgraph::comm
