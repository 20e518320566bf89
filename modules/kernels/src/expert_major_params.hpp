#pragma once
// Launch parameters of the expert-major permute and un-permute (private to kernels): plain,
// trivially copyable, built once when the ops are planned.
#include <cuda_runtime_api.h>

#include <cstddef>

#include "epgraph/comm/expert_major_layout.hpp"
#include "epgraph/comm/host_device.hpp"
#include "epgraph/comm/session_view.hpp"

namespace epgraph::kernels::detail {

/// Count and place: warps per CTA, one chunk of receive slots each.
inline constexpr int chunk_warps = 4;
/// Copy: vectors each lane keeps in flight; a copy item is 32 lanes x this many vectors of a row.
inline constexpr int copy_unroll = 4;

/// Small layouts (at most 32 chunks, 128 slots and 2048 counts: a decode session of up to 256
/// tokens a rank at EP4 with 64 experts a rank, or at EP2 with 128) skip CUB's scan: the place
/// kernel finds the chunk starts in the counts itself, a lane per slot with every chunk's count
/// in flight at once; two dependent launches fewer (2x H200, EP2, 128 slots: T = 128 -1.4 us),
/// and no scan scratch. Each round of 32 slots is one more round trip in every place warp, hence
/// the bounds (a first cut bounded by chunks alone lost 7.6 us at EP2, T = 512: 4096 counts;
/// perf-notes v31).
inline constexpr int inline_scan_chunks = 32;
inline constexpr int inline_scan_slots = 128;
inline constexpr int inline_scan_counts = 2048;
EPGRAPH_HD inline bool inline_scan(const comm::expert_major_layout& l) {
  return l.chunks <= inline_scan_chunks && l.local_slots <= inline_scan_slots &&
         l.chunks * l.local_slots <= inline_scan_counts;
}

struct expert_major_params {
  comm::session_view v;
  comm::expert_major_layout layout;
  char* buffer;              ///< the expert-major buffer (layout.bytes)
  const float* recv_weights; ///< the received weights payload [ep][max_tokens][k] fp32, or null
  std::size_t row_bytes[comm::max_payloads];  ///< each payload's row
  int vec_bytes[comm::max_payloads];  ///< copy width of each payload (its rows' natural alignment)
  int segments[comm::max_payloads];   ///< copy items per row of each payload (32 lanes x copy_unroll vectors each)
  int row_segments;                   ///< their sum: copy items per received token
  int shared_bytes;          ///< dynamic shared memory of the count and place kernels

  template <class T>
  __host__ __device__ T* at(const comm::region& r) const {
    return reinterpret_cast<T*>(buffer + r.offset);
  }
};

/// Bytes of scratch CUB's scan needs for `items` counts (a query; enqueues nothing).
cudaError_t expert_major_scan_bytes(int items, std::size_t* bytes) noexcept;
/// count, scan (into `scan_scratch`; not for inline_scan layouts), place, copy: the rows of every
/// received token into expert-major order. grid: the copy kernel's CTAs.
cudaError_t launch_permute(const expert_major_params& p, void* scan_scratch, std::size_t scan_bytes, int grid,
                           cudaStream_t stream) noexcept;
/// The weighted (or plain) sum of each received token's expert rows into the combine region.
cudaError_t launch_unpermute(const expert_major_params& p, bool weighted, bool vectorized, int grid,
                             cudaStream_t stream) noexcept;

}  // namespace epgraph::kernels::detail
