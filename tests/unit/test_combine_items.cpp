// Which combine grids pull deep (modules/kernels/src/device/combine_items.hpp, the rule the
// host uses to pick the combine kernel): grids of at most 512 warps, whatever their shape.
#include <gtest/gtest.h>

#include "device/combine_items.hpp"
#include "epgraph/comm/ep_config.hpp"

namespace {

using epgraph::kernels::device::grid_pulls_deep;

TEST(CombineItems, GridsOfAtMost512WarpsPullDeep) {
  EXPECT_TRUE(grid_pulls_deep(16, 512));  // the SM-budget grids of perf-notes v23
  EXPECT_TRUE(grid_pulls_deep(24, 512));
  EXPECT_TRUE(grid_pulls_deep(32, 512));  // 512 warps: the largest deep grid
  EXPECT_FALSE(grid_pulls_deep(33, 512));
  EXPECT_FALSE(grid_pulls_deep(64, 512));  // the default grid keeps the 8-load pull
  EXPECT_TRUE(grid_pulls_deep(64, 256));   // warps count, not CTAs
  EXPECT_FALSE(grid_pulls_deep(65, 256));
}

TEST(CombineItems, TheMpiCombineCasesCoverBothPulls) {
  // tests/mpi/test_dispatch_combine.cpp: the small_grid_* cases run 2 CTAs of 256 threads and
  // must reach the deep pull; the other Combine cases run 48 CTAs of 512 and the usual one.
  EXPECT_TRUE(grid_pulls_deep(2, 256));
  EXPECT_FALSE(grid_pulls_deep(48, 512));
}

TEST(CombineItems, TheConfigLimitsAreDecidedByWarps) {
  namespace comm = epgraph::comm;
  EXPECT_FALSE(grid_pulls_deep(comm::max_num_ctas, comm::max_threads_per_cta));
  EXPECT_TRUE(grid_pulls_deep(1, comm::max_threads_per_cta));
  EXPECT_TRUE(grid_pulls_deep(comm::max_num_ctas / 2, 32));  // 512 one-warp CTAs
  EXPECT_FALSE(grid_pulls_deep(comm::max_num_ctas / 2 + 1, 32));
}

}  // namespace
