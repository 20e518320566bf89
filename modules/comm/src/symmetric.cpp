// symmetric_window, device_comm and device_buffer: thin RAII over NCCL / CUDA allocations.
#include <cuda_runtime_api.h>

#include <cstring>
#include <utility>

#include "epgraph/comm/device_buffer.hpp"
#include "epgraph/comm/device_comm.hpp"
#include "epgraph/comm/error.hpp"
#include "epgraph/comm/symmetric_window.hpp"

namespace epgraph::comm {

device_buffer::device_buffer(std::size_t bytes) : bytes_(bytes) {
  if (bytes) EPG_CHECK_CUDA(cudaMalloc(&ptr_, bytes));
}

device_buffer::~device_buffer() {
  if (ptr_) EPG_REPORT_CUDA(cudaFree(ptr_));
}

symmetric_memory::symmetric_memory(std::size_t bytes) : bytes_(bytes) { EPG_CHECK_NCCL(ncclMemAlloc(&ptr_, bytes)); }

symmetric_memory::symmetric_memory(symmetric_memory&& o) noexcept
    : ptr_(std::exchange(o.ptr_, nullptr)), bytes_(std::exchange(o.bytes_, 0)) {}

symmetric_memory& symmetric_memory::operator=(symmetric_memory&& o) noexcept {
  if (this != &o) {
    symmetric_memory dying(std::move(*this));
    ptr_ = std::exchange(o.ptr_, nullptr);
    bytes_ = std::exchange(o.bytes_, 0);
  }
  return *this;
}

symmetric_memory::~symmetric_memory() {
  if (ptr_) EPG_REPORT_NCCL(ncclMemFree(ptr_));
}

void* symmetric_memory::release() noexcept {
  bytes_ = 0;
  return std::exchange(ptr_, nullptr);
}

symmetric_window::symmetric_window(nccl_comm_ref comm, symmetric_memory memory)
    : comm_(comm.get()), memory_(std::move(memory)) {
  // On failure memory_ is destroyed with this object, freeing the allocation.
  EPG_CHECK_NCCL(ncclCommWindowRegister(comm_, memory_.get(), memory_.bytes(), &window_, NCCL_WIN_COLL_SYMMETRIC));
}

symmetric_window::symmetric_window(symmetric_window&& o) noexcept
    : comm_(o.comm_), memory_(std::move(o.memory_)), window_(std::exchange(o.window_, nullptr)) {}

symmetric_window::~symmetric_window() {
  if (window_) EPG_REPORT_NCCL(ncclCommWindowDeregister(comm_, window_));
}

device_comm::device_comm(nccl_comm_ref comm, int lsa_barrier_count) : comm_(comm.get()), barriers_(lsa_barrier_count) {
  ncclDevCommRequirements req;
  std::memset(&req, 0, sizeof req);  // 2.28 has no initializer macro; zero means "none"
  req.lsaBarrierCount = lsa_barrier_count;
  req.lsaMultimem = false;  // NVLink multicast stays off (it can take shared hosts down)
  ncclResult_t made = ncclDevCommCreate(comm_, &req, &dev_);
  if (made != ncclSuccess) {
    throw error(error_domain::nccl, "ncclDevCommCreate", static_cast<int>(made), ncclGetErrorString(made),
                "the communicator may lack symmetric-memory (LSA) support: all ranks must be GPUs of one "
                "NVLink domain with CUDA VMM; run with NCCL_DEBUG=WARN for the cause");
  }
}

device_comm::device_comm(device_comm&& o) noexcept
    : comm_(std::exchange(o.comm_, nullptr)), dev_(o.dev_), barriers_(o.barriers_) {}

device_comm::~device_comm() {
  if (comm_) EPG_REPORT_NCCL(ncclDevCommDestroy(comm_, &dev_));
}

}  // namespace epgraph::comm
