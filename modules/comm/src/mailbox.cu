#include <nccl.h>
#include <nccl_device.h>

#include "epgraph/comm/faults.cuh"
#include "epgraph/comm/progress.hpp"
#include "mailbox.hpp"

namespace epgraph::comm::detail {
namespace {

__device__ void store_slot(const mailbox_view& m, const mailbox_slot& slot, std::size_t row, int peer) {
  auto* dst = static_cast<volatile std::uint64_t*>(ncclGetLsaPointer(
      m.window, m.mailbox_offset + (row * m.ranks + m.rank) * sizeof(mailbox_slot), peer));
  const auto* src = reinterpret_cast<const std::uint64_t*>(&slot);
  for (std::size_t w = 1; w < sizeof(mailbox_slot) / sizeof(std::uint64_t); ++w) dst[w] = src[w];
  __threadfence_system();  // the body is visible before the round that announces it
  dst[0] = slot.round;
}

// One thread per destination rank.
__global__ void post_kernel(const mailbox_view m, const mailbox_slot slot) {
  for (int peer = threadIdx.x; peer < m.ranks; peer += blockDim.x) store_slot(m, slot, slot.round & 1u, peer);
}

__global__ void leave_kernel(const mailbox_view m, fault_code reason) {
  if (threadIdx.x == 0) {
    fault_record f;
    f.code = reason;
    f.op = collective_kind::stopped;
    device::record_fault(&m.faults->fatal, f);
  }
  const unsigned long long stopped = progress_word(0, collective_kind::stopped);
  for (int i = threadIdx.x; i < m.ranks * m.ctas; i += blockDim.x) {
    const int peer = i / m.ctas, cta = i % m.ctas;
    auto* slot = static_cast<unsigned long long*>(ncclGetLsaPointer(
        m.window, m.arrivals_offset + (static_cast<std::size_t>(m.rank) * m.ctas + cta) * sizeof(std::uint64_t), peer));
    device::raise_release_sys(slot, stopped);  // progress slots only rise: no later word hides it
  }
  __threadfence_system();
  mailbox_slot left;
  left.round = left_round;
  for (int peer = threadIdx.x; peer < m.ranks; peer += blockDim.x) store_slot(m, left, mailbox_left_row, peer);
}

}  // namespace

cudaError_t post_mail(const mailbox_view& m, const mailbox_slot& slot, cudaStream_t stream) noexcept {
  post_kernel<<<1, 32, 0, stream>>>(m, slot);  // one warp: fits beside a running collective
  return cudaGetLastError();
}

cudaError_t post_leave(const mailbox_view& m, fault_code reason, cudaStream_t stream) noexcept {
  // One warp: it must fit on an SM beside this rank's own collective kernel (one CTA of up to
  // 512 threads per SM), which may still be waiting for a peer.
  leave_kernel<<<1, 32, 0, stream>>>(m, reason);
  return cudaGetLastError();
}

}  // namespace epgraph::comm::detail
