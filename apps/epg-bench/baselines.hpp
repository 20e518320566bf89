#pragma once
// The three baselines epg-bench runs in the same process on the same bytes:
//  (a) NCCL grouped ncclSend/ncclRecv moving exactly each pair's bytes (what a user with
//      host-known counts would write), and
//  (b) a raw device-API LSA all-to-all: every CTA stores its share of each pair's bytes
//      straight into the peer's symmetric window, then one LSA barrier per CTA: what the
//      primitive costs with no routing work. It is a plain loop (one 16-byte load in flight
//      per thread), not a tuned copy, so at large T our dispatch beats it.
//  (c) a raw device-API LSA pull, combine's shape without its routing and sums: one LSA
//      barrier per CTA (combine's entry barrier), then every CTA loads its share of the bytes
//      this rank gets back from each peer (the rows it dispatched there) straight from the
//      peer's window (8 loads in flight per thread, every peer's share in one stream of
//      loads) into local memory. Combine loads after its barrier; the store copy (b) is not
//      its floor.
// The LSA baselines index their per-rank byte counts by LSA rank: with several NVLink domains
// they move ranks 0 .. L-1's counts between the peers of this rank's domain, not the routing's
// pairs, so their columns are only comparable with one domain.
// All only enqueue work (capturable) once constructed.
#include <cuda_runtime_api.h>

#include <cstddef>
#include <vector>

#include "epgraph/comm/device_buffer.hpp"
#include "epgraph/comm/device_comm.hpp"
#include "epgraph/comm/symmetric_window.hpp"

namespace epgraph::bench {

/// bytes[p]: what this rank sends to rank p; recv[p]: what it receives from p.
struct pair_bytes {
  std::vector<std::size_t> send, recv;
};

/// Rank `me`'s bytes with every rank in one step of a routing (counts[dst][src]: tokens src
/// routes to dst). Dispatch sends counts[d][me] tokens to d and receives counts[me][d] from d;
/// combine moves the rows back: it sends d the counts[me][d] rows d dispatched here and
/// receives the counts[d][me] rows it dispatched to d, which is what a pull loads from d
/// (lsa_pull takes combine.recv).
struct step_bytes {
  pair_bytes dispatch, combine;
};
step_bytes step_bytes_of(const std::vector<std::vector<int>>& counts, int me, std::size_t dispatch_bytes_per_token,
                         std::size_t combine_row_bytes);

class nccl_alltoallv {
 public:
  nccl_alltoallv(comm::nccl_comm_ref comm, pair_bytes bytes);
  [[nodiscard]] cudaError_t run(cudaStream_t stream) const noexcept;

 private:
  comm::nccl_comm_ref comm_;
  pair_bytes bytes_;
  comm::device_buffer send_, recv_;
  std::vector<std::size_t> send_offset_, recv_offset_;
};

class lsa_alltoall {
 public:
  lsa_alltoall(comm::nccl_comm_ref comm, pair_bytes bytes, int ctas, int threads);
  [[nodiscard]] cudaError_t run(cudaStream_t stream) const noexcept;

 private:
  int rank_, ranks_, ctas_, threads_;
  std::size_t slot_bytes_;  // per-source region in every window (max over pairs, 16-aligned)
  std::vector<std::size_t> send_bytes_;
  comm::device_buffer send_, send_table_;
  comm::symmetric_window window_;
  comm::device_comm dev_;
};

/// pull[p]: the bytes this rank loads from rank p's window.
class lsa_pull {
 public:
  lsa_pull(comm::nccl_comm_ref comm, std::vector<std::size_t> pull, int ctas, int threads);
  [[nodiscard]] cudaError_t run(cudaStream_t stream) const noexcept;

 private:
  int ranks_, ctas_, threads_;
  std::size_t slot_bytes_;  // per-reader region in every window (max over pairs, 16-aligned)
  comm::device_buffer recv_, recv_table_;
  comm::symmetric_window window_;
  comm::device_comm dev_;
};

}  // namespace epgraph::bench
