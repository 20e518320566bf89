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
/// Un-permute: segments per warp item at most. Longer spans read a token's places less often,
/// shorter ones leave the warps more evenly loaded at the end; at 2x H200, EP2, T = 4096, 3
/// beat whole rows by 3.5 to 7.7% and lost nowhere beyond noise (perf-notes v34; 1 and 2 lost
/// at T = 512).
inline constexpr int unpermute_max_span = 3;

/// Layouts whose place kernel sums the chunk counts itself, without CUB's scan
/// (comm::expert_major_inline_scan_*: the planner decides).
inline constexpr int inline_scan_chunks = comm::expert_major_inline_scan_chunks;
EPGRAPH_HD inline bool inline_scan(const comm::expert_major_layout& l) { return l.inline_scan; }

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
  int max_span = unpermute_max_span;  ///< un-permute: the most segments of a row one warp item takes

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
/// The grids of launch_permute's copy kernel and of launch_unpermute: the CTAs the device holds
/// at once (occupancy x sms), at most one warp per item of a full batch (queries; enqueue nothing).
cudaError_t permute_copy_grid(const expert_major_params& p, int sms, int* grid) noexcept;
cudaError_t unpermute_grid(const expert_major_params& p, bool weighted, bool vectorized, int sms, int* grid) noexcept;

}  // namespace epgraph::kernels::detail
