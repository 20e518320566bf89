#pragma once
// How the un-permute splits received tokens' combine rows into warp items (expert_major.cu):
// the kernel and its grid query both use these, and the host unit tests check them
// (tests/unit/test_unpermute_items.cpp) without CUDA.
#include "epgraph/comm/host_device.hpp"

namespace epgraph::kernels::device {

/// Element groups per lane in one segment of a row.
inline constexpr int unpermute_sum_groups = 2;

/// Segments of a combine row of `hidden` elements: unpermute_sum_groups groups of `per_group`
/// elements for each of 32 lanes (the last segment may be partial).
EPGRAPH_HD constexpr int unpermute_segments(int hidden, int per_group) {
  return (hidden / per_group + 32 * unpermute_sum_groups - 1) / (32 * unpermute_sum_groups);
}

/// Segments per warp item: `max_span` when the `received` tokens give each of the grid's
/// `warps` two items of them, fewer (down to one) for small batches, so these still spread over
/// the grid; never more than a row has. An item reads its token's rows once for all its
/// segments, so longer spans drop dependent round trips; the cap keeps the warps evenly loaded.
EPGRAPH_HD constexpr int unpermute_span(long long received, int segments, long long warps, int max_span) {
  const long long two_per_warp = 2 * warps;
  const long long wanted = (received * segments + two_per_warp - 1) / two_per_warp;
  const long long cap = segments < max_span ? segments : max_span;
  const long long at_least_one = wanted > 1 ? wanted : 1;
  return static_cast<int>(at_least_one < cap ? at_least_one : cap);
}

}  // namespace epgraph::kernels::device
