#include <nccl.h>
#include <nccl_device.h>

#include <algorithm>

#include "baselines.hpp"
#include "epgraph/comm/ep_config.hpp"
#include "epgraph/comm/error.hpp"
#include "epgraph/sim/device.hpp"

namespace epgraph::bench {
namespace {

std::size_t round16(std::size_t n) { return (n + 15) / 16 * 16; }

std::vector<std::size_t> offsets(const std::vector<std::size_t>& sizes) {
  std::vector<std::size_t> out(sizes.size() + 1, 0);
  for (std::size_t i = 0; i < sizes.size(); ++i) out[i + 1] = out[i] + round16(sizes[i]);
  return out;
}

// CTA b copies its contiguous share of every pair's bytes (16-byte words) into the peer's
// window at [my rank][...], then synchronizes with CTA b of every peer.
__global__ void lsa_alltoall_kernel(const __grid_constant__ ncclDevComm dev, ncclWindow_t win, const uint4* send,
                                    const unsigned long long* table, std::size_t slot_bytes) {
  const int n = dev.lsaSize, me = dev.lsaRank;
  for (int i = 0; i < n; ++i) {
    const int peer = (me + i) % n;  // stagger destinations across ranks
    const std::size_t words = table[2 * peer + 1] / 16, begin = table[2 * peer] / 16;
    const std::size_t per_cta = (words + gridDim.x - 1) / gridDim.x;
    const std::size_t w0 = per_cta * blockIdx.x, w1 = min(words, w0 + per_cta);
    uint4* dst = static_cast<uint4*>(ncclGetLsaPointer(win, slot_bytes * me, peer));
    for (std::size_t w = w0 + threadIdx.x; w < w1; w += blockDim.x) dst[w] = send[begin + w];
  }
  ncclLsaBarrierSession<ncclCoopCta> bar(ncclCoopCta(), dev, ncclTeamLsa(dev), dev.lsaBarrier, blockIdx.x);
  bar.sync(ncclCoopCta(), cuda::memory_order_acq_rel);
}

constexpr int kMaxPullPeers = comm::max_ep_size;  // ep_config rejects larger groups
constexpr int kPullLoads = 8;  // 16-byte loads in flight per thread (combine keeps 8 or 16)

// After one LSA barrier (combine's only one: the peers' rows are written; the next launch's
// barrier orders these loads before the peers write again), CTA b loads its contiguous share
// of the bytes this rank gets from every peer (staggered as above) from the peer's window at
// [my rank][...] into local memory. The shares are one stream of words per CTA, so a thread's
// loads in flight come from several peers where the shares are short (small T). The shares
// are worked out before the barrier, as combine finds its rows before it waits.
__global__ void lsa_pull_kernel(const __grid_constant__ ncclDevComm dev, ncclWindow_t win, uint4* recv,
                                const unsigned long long* table, std::size_t slot_bytes) {
  __shared__ std::size_t s_end[kMaxPullPeers], s_first[kMaxPullPeers], s_dst[kMaxPullPeers];
  __shared__ const uint4* s_src[kMaxPullPeers];
  const int n = dev.lsaSize, me = dev.lsaRank;
  if (threadIdx.x == 0) {
    std::size_t run = 0;
    for (int i = 0; i < n; ++i) {
      const int peer = (me + i) % n;
      const std::size_t words = table[2 * peer + 1] / 16, per_cta = (words + gridDim.x - 1) / gridDim.x;
      const std::size_t w1 = min(words, per_cta * (blockIdx.x + 1)), w0 = min(w1, per_cta * blockIdx.x);
      s_first[i] = w0;
      s_dst[i] = table[2 * peer] / 16;
      s_src[i] = static_cast<const uint4*>(ncclGetLsaPointer(win, slot_bytes * me, peer));
      run += w1 - w0;
      s_end[i] = run;
    }
  }
  __syncthreads();
  ncclLsaBarrierSession<ncclCoopCta> bar(ncclCoopCta(), dev, ncclTeamLsa(dev), dev.lsaBarrier, blockIdx.x);
  bar.sync(ncclCoopCta(), cuda::memory_order_acq_rel);
  const std::size_t total = s_end[n - 1];
  int i = 0;  // the share of this thread's next word (its words only grow)
  for (std::size_t f = threadIdx.x; f < total; f += std::size_t{blockDim.x} * kPullLoads) {
    uint4 x[kPullLoads];
    uint4* to[kPullLoads];
#pragma unroll
    for (int u = 0; u < kPullLoads; ++u) {
      const std::size_t g = f + std::size_t{blockDim.x} * u;
      to[u] = nullptr;
      if (g < total) {
        while (g >= s_end[i]) ++i;
        const std::size_t w = s_first[i] + g - (i > 0 ? s_end[i - 1] : 0);
        x[u] = s_src[i][w];
        to[u] = recv + s_dst[i] + w;
      }
    }
#pragma unroll
    for (int u = 0; u < kPullLoads; ++u)
      if (to[u]) *to[u] = x[u];
  }
}

// The largest of every rank's `mine`, rounded up to a page (a window slot per rank).
std::size_t agreed_slot_bytes(std::size_t mine) {
  unsigned long long local = mine, most = 0;
  EPG_CHECK_MPI(MPI_Allreduce(&local, &most, 1, MPI_UNSIGNED_LONG_LONG, MPI_MAX, MPI_COMM_WORLD));
  return (std::max<unsigned long long>(most, 16) + 4095) / 4096 * 4096;
}

}  // namespace

step_bytes step_bytes_of(const std::vector<std::vector<int>>& counts, int me, std::size_t dispatch_bytes_per_token,
                         std::size_t combine_row_bytes) {
  step_bytes b;
  for (std::size_t d = 0; d < counts.size(); ++d) {
    const auto to_d = static_cast<std::size_t>(counts[d][me]), from_d = static_cast<std::size_t>(counts[me][d]);
    b.dispatch.send.push_back(to_d * dispatch_bytes_per_token);
    b.dispatch.recv.push_back(from_d * dispatch_bytes_per_token);
    b.combine.send.push_back(from_d * combine_row_bytes);
    b.combine.recv.push_back(to_d * combine_row_bytes);
  }
  return b;
}

nccl_alltoallv::nccl_alltoallv(comm::nccl_comm_ref comm, pair_bytes bytes)
    : comm_(comm),
      bytes_(std::move(bytes)),
      send_(std::max<std::size_t>(16, offsets(bytes_.send).back())),
      recv_(std::max<std::size_t>(16, offsets(bytes_.recv).back())),
      send_offset_(offsets(bytes_.send)),
      recv_offset_(offsets(bytes_.recv)) {
  EPG_CHECK_CUDA(sim::fill_pattern(send_.get(), 1, send_.bytes(), 3, nullptr));
}

cudaError_t nccl_alltoallv::run(cudaStream_t stream) const noexcept {
  if (ncclGroupStart() != ncclSuccess) return cudaErrorUnknown;
  bool ok = true;
  for (std::size_t p = 0; p < bytes_.send.size(); ++p) {
    const int peer = static_cast<int>(p);
    if (bytes_.send[p])
      ok &= ncclSend(send_.as<char>() + send_offset_[p], bytes_.send[p], ncclUint8, peer, comm_.get(), stream) ==
            ncclSuccess;
    if (bytes_.recv[p])
      ok &= ncclRecv(recv_.as<char>() + recv_offset_[p], bytes_.recv[p], ncclUint8, peer, comm_.get(), stream) ==
            ncclSuccess;
  }
  ok &= ncclGroupEnd() == ncclSuccess;
  return ok ? cudaSuccess : cudaErrorUnknown;
}

lsa_alltoall::lsa_alltoall(comm::nccl_comm_ref comm, pair_bytes bytes, int ctas, int threads)
    : rank_(comm.rank()),
      ranks_(comm.size()),
      ctas_(ctas),
      threads_(threads),
      slot_bytes_(0),
      send_bytes_(bytes.send),
      send_(std::max<std::size_t>(16, offsets(bytes.send).back())),
      send_table_(2 * sizeof(unsigned long long) * bytes.send.size()),
      window_(comm, [&] {
        // Same size on every rank: the largest pair anywhere, agreed by an allreduce.
        std::size_t mine = 0;
        for (auto b : bytes.recv) mine = std::max(mine, round16(b));
        for (auto b : bytes.send) mine = std::max(mine, round16(b));
        slot_bytes_ = agreed_slot_bytes(mine);
        return slot_bytes_ * static_cast<std::size_t>(ranks_);
      }()),
      dev_(comm, ctas) {
  auto off = offsets(send_bytes_);
  std::vector<unsigned long long> table;
  for (std::size_t p = 0; p < send_bytes_.size(); ++p) {
    table.push_back(off[p]);
    table.push_back(round16(send_bytes_[p]));
  }
  EPG_CHECK_CUDA(cudaMemcpy(send_table_.get(), table.data(), table.size() * 8, cudaMemcpyHostToDevice));
  EPG_CHECK_CUDA(sim::fill_pattern(send_.get(), 1, send_.bytes(), 5, nullptr));
  EPG_CHECK_CUDA(cudaDeviceSynchronize());
}

cudaError_t lsa_alltoall::run(cudaStream_t stream) const noexcept {
  lsa_alltoall_kernel<<<ctas_, threads_, 0, stream>>>(dev_.get(), window_.window(), send_.as<uint4>(),
                                                      send_table_.as<unsigned long long>(), slot_bytes_);
  return cudaGetLastError();
}

lsa_pull::lsa_pull(comm::nccl_comm_ref comm, std::vector<std::size_t> pull, int ctas, int threads)
    : ranks_(comm.size()),
      ctas_(ctas),
      threads_(threads),
      slot_bytes_(0),
      recv_(std::max<std::size_t>(16, offsets(pull).back())),
      recv_table_(2 * sizeof(unsigned long long) * pull.size()),
      window_(comm, [&] {
        // A peer's slot [reader] holds what that reader pulls from it: the largest pull anywhere.
        std::size_t mine = 0;
        for (auto b : pull) mine = std::max(mine, round16(b));
        slot_bytes_ = agreed_slot_bytes(mine);
        return slot_bytes_ * static_cast<std::size_t>(ranks_);
      }()),
      dev_(comm, ctas) {
  const auto off = offsets(pull);
  std::vector<unsigned long long> table;
  for (std::size_t p = 0; p < pull.size(); ++p) {
    table.push_back(off[p]);
    table.push_back(round16(pull[p]));
  }
  EPG_CHECK_CUDA(cudaMemcpy(recv_table_.get(), table.data(), table.size() * 8, cudaMemcpyHostToDevice));
  EPG_CHECK_CUDA(sim::fill_pattern(window_.local(), 1, slot_bytes_ * static_cast<std::size_t>(ranks_), 7, nullptr));
  EPG_CHECK_CUDA(cudaDeviceSynchronize());
}

cudaError_t lsa_pull::run(cudaStream_t stream) const noexcept {
  lsa_pull_kernel<<<ctas_, threads_, 0, stream>>>(dev_.get(), window_.window(), recv_.as<uint4>(),
                                                  recv_table_.as<unsigned long long>(), slot_bytes_);
  return cudaGetLastError();
}

}  // namespace epgraph::bench
