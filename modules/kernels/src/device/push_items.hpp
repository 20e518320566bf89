#pragma once
// How a dispatch CTA splits its push into warp work items. Host and device code, so that the
// mapping is unit-tested on the host (tests/unit/test_push_items.cpp): every vector of every
// copy of every token is pushed by exactly one item.

#include <cstddef>
#include <initializer_list>

#include "epgraph/comm/host_device.hpp"
#include "epgraph/kernels/launch_params.hpp"

namespace epgraph::kernels::device {

inline constexpr int kPushUnroll = 4;  // independent loads in flight per lane in one push round

/// A CTA's push as warp work items. With at least as many tokens as warps, an item is a whole
/// token, all copies in turn. With fewer, an item is (token, copy, slice): a copy that one
/// warp moves in one round (top-k ids, weights, scales) is one item per token, the others are
/// cut into slices, so that every warp gets about one round instead of the warps that hold a
/// hidden slice also moving the small copies after it (T=1 on 4 GPUs: -1.2 us). At large T
/// the split form left the small copies as a latency-bound tail (EP2 T=4096: +3 to +7%).
struct push_items {
  struct item {
    int token, copy, copy_end, slice, slices;
  };
  int tokens, num_copies, small = 0, large = 0, slices = 1;
  bool whole_tokens;

  /// A copy one warp moves in one round: 32 lanes x kPushUnroll vectors; a quantizing copy's
  /// round is 1024 elements whatever its lane width (kPushUnroll 16-byte bf16 loads per lane).
  EPGRAPH_HD static bool one_round(const copy_spec& c) {
    return c.row_bytes <= std::size_t{32} * kPushUnroll * (c.quantize ? 8 : c.vec_bytes);
  }
  EPGRAPH_HD static int at_least_1(int x) { return x > 1 ? x : 1; }

  /// Host, with the copies: their push order (dispatch_params::order).
  static void plan(dispatch_params& p) {
    p.order = {};
    int n = 0;
    for (const bool small_pass : {false, true})
      for (int c = 0; c < p.num_copies; ++c)
        if (one_round(p.copies[c]) == small_pass) {
          p.order.copy[n++] = static_cast<std::int8_t>(c);
          ++(small_pass ? p.order.small : p.order.large);
        }
  }

  EPGRAPH_HD push_items(const dispatch_params& p, int tokens, int nwarps)
      : tokens(tokens), num_copies(p.num_copies), small(p.order.small), large(p.order.large),
        whole_tokens(tokens >= nwarps) {
    if (tokens > 0 && large > 0) slices = at_least_1((at_least_1(nwarps / tokens) - small) / large);
  }
  EPGRAPH_HD int count() const { return whole_tokens ? tokens : tokens * (large * slices + small); }

  /// Item i of count(); warp-uniform. Sliced items first, then the small ones, each
  /// token-major.
  EPGRAPH_HD item at(const dispatch_params& p, int first_token, int i) const {
    if (whole_tokens) return {first_token + i, 0, num_copies, 0, 1};
    const int sliced = tokens * large * slices;
    const bool is_small = i >= sliced;
    item it{};
    int k;  // the k-th small or sliced copy
    if (!is_small) {
      it.token = first_token + i / (large * slices);
      k = i % (large * slices) / slices;
      it.slice = i % slices;
      it.slices = slices;
    } else {
      it.token = first_token + (i - sliced) / small;
      k = (i - sliced) % small;
      it.slice = 0;
      it.slices = 1;
    }
    it.copy = p.order.copy[is_small ? large + k : k];
    it.copy_end = it.copy + 1;
    return it;
  }

  /// Vectors [first, end) of a row of nvec vectors that slice `slice` of `slices` covers.
  EPGRAPH_HD static void slice_range(std::size_t nvec, int slice, int slices, std::size_t& first, std::size_t& end) {
    // 32-bit division for rows below 2^31 vectors (all of them in practice): the 64-bit one is
    // a software routine on the way to a CTA's first store (perf-notes v39).
    const std::size_t per_slice = nvec < (std::size_t{1} << 31)
                                      ? (static_cast<unsigned>(nvec) + static_cast<unsigned>(slices) - 1u) /
                                            static_cast<unsigned>(slices)
                                      : (nvec + slices - 1) / slices;
    first = per_slice * slice;
    end = first + per_slice < nvec ? first + per_slice : nvec;
  }
};

}  // namespace epgraph::kernels::device
