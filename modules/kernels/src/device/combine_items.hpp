#pragma once
// Which combine grids pull deep (combine.cu then takes the deep pull where rows are whole).
// The host picks the kernel by it; a header of its own so that the rule is unit-tested on the
// host (tests/unit/test_combine_items.cpp) without CUDA.

namespace epgraph::kernels::device {

/// Grids of at most this many warps (32 CTAs of 512 threads) pull deep: 16 loads in flight per
/// lane instead of 8 for tokens with at most 4 sources. A small grid has few warps to keep
/// NVLink busy (EP4 T=4096 at 16 CTAs: 510 -> 497 us); on 64 CTAs the same depth cost 36 us
/// (perf-notes v22, v23).
inline constexpr int deep_pull_max_warps = 512;

constexpr bool grid_pulls_deep(int num_ctas, int threads_per_cta) {
  return static_cast<long long>(num_ctas) * (threads_per_cta / 32) <= deep_pull_max_warps;
}

}  // namespace epgraph::kernels::device
