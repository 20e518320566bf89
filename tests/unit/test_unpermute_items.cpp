// How the un-permute splits its work (modules/kernels/src/device/unpermute_items.hpp, the rule
// expert_major.cu's kernel and its grid query run): segments cover a row exactly, spans stay
// within [1, min(segments, cap)], and the items of every span length cover every segment of
// every token once.
#include <gtest/gtest.h>

#include <vector>

#include "device/unpermute_items.hpp"

namespace {

using epgraph::kernels::device::unpermute_segments;
using epgraph::kernels::device::unpermute_span;
using epgraph::kernels::device::unpermute_sum_groups;

TEST(UnpermuteItems, SegmentsCoverARowWithAtMostOnePartialSegment) {
  for (int per_group : {1, 2, 4, 8}) {
    for (int hidden = per_group; hidden <= 20000; hidden += per_group) {
      const int groups = hidden / per_group, per_segment = 32 * unpermute_sum_groups;
      const int segments = unpermute_segments(hidden, per_group);
      ASSERT_GE(segments * per_segment, groups) << hidden << " / " << per_group;
      ASSERT_LT((segments - 1) * per_segment, groups) << hidden << " / " << per_group;
    }
  }
  EXPECT_EQ(unpermute_segments(7168, 8), 14);  // the bench's bf16 rows: 896 groups of 8
  EXPECT_EQ(unpermute_segments(2880, 8), 6);   // 360 groups: 5 whole segments and a partial one
  EXPECT_EQ(unpermute_segments(7168, 1), 112); // the scalar path
}

// The cap is passed as the kernel gets it (unpermute_max_span, 3, lives in a header with
// CUDA-only declarations, which this host test does not include).
TEST(UnpermuteItems, LargeBatchesTakeTheCapSmallOnesSpreadOverTheGrid) {
  const long long warps = 132 * 3 * 8;  // three CTAs of 8 warps per SM on an H100 / H200
  // T = 4096 at EP2, k = 8: ~8000 received tokens of 14 segments: far more than two items per warp.
  EXPECT_EQ(unpermute_span(8000, 14, warps, 3), 3);
  // One received token: one segment per item, so its 14 segments go to 14 warps.
  EXPECT_EQ(unpermute_span(1, 14, warps, 3), 1);
  EXPECT_EQ(unpermute_span(0, 14, warps, 3), 1);  // an empty batch still has a valid span
  // Between: just enough segments per item to give every warp two items.
  EXPECT_EQ(unpermute_span(2 * warps, 1, warps, 3), 1);
  EXPECT_EQ(unpermute_span(warps, 4, warps, 3), 2);
  EXPECT_EQ(unpermute_span(warps + 1, 4, warps, 3), 3);
  // Never more than a row has, whatever the cap.
  EXPECT_EQ(unpermute_span(1 << 20, 2, warps, 3), 2);
  EXPECT_EQ(unpermute_span(1 << 20, 14, warps, 1 << 20), 14);
  // The largest totals a session can have (ep_size x max_tokens near 2^31) on the smallest
  // grid: the product stays in 64 bits.
  EXPECT_EQ(unpermute_span(2147483647, 112, 8, 3), 3);
  EXPECT_EQ(unpermute_span(2147483647, 112, 8, 1000), 112);
  EXPECT_EQ(unpermute_span(2147483647, 1, 1, 3), 1);
}

TEST(UnpermuteItems, EverySpanLengthCoversEverySegmentOnce) {
  // The kernel's loop: item i takes token i / spans and segments [first, min(first + span,
  // segments)) with first = (i % spans) * span.
  for (int segments = 1; segments <= 40; ++segments) {
    for (int received : {1, 3, 100, 5000}) {
      for (long long warps : {8ll, 1056ll, 3168ll}) {
        for (int cap : {1, 2, 3, 4, 14}) {
          const int span = unpermute_span(received, segments, warps, cap);
          ASSERT_GE(span, 1);
          ASSERT_LE(span, segments < cap ? segments : cap);
          const int spans = (segments + span - 1) / span;
          std::vector<int> seen(segments, 0);
          for (int item = 0; item < spans; ++item) {
            const int first = item * span, last = first + span < segments ? first + span : segments;
            ASSERT_LT(first, last) << "an empty item";
            for (int s = first; s < last; ++s) ++seen[s];
          }
          for (int s = 0; s < segments; ++s) ASSERT_EQ(seen[s], 1) << "segment " << s << ", span " << span;
        }
      }
    }
  }
}

}  // namespace
