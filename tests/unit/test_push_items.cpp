// The dispatch push's split into warp work items (modules/kernels/src/device/push_items.hpp,
// the same code the kernel runs): every vector of every copy of every token is pushed by
// exactly one item, and at small T the warps get about one item each.
#include <gtest/gtest.h>

#include <cstddef>
#include <vector>

#include "device/push_items.hpp"

namespace {

using epgraph::kernels::copy_spec;
using epgraph::kernels::dispatch_params;
using epgraph::kernels::device::push_items;

struct row {
  std::size_t bytes;
  int vec;
};

dispatch_params params_for(const std::vector<row>& rows) {
  dispatch_params p{};
  p.num_copies = static_cast<int>(rows.size());
  for (std::size_t c = 0; c < rows.size(); ++c) p.copies[c] = copy_spec{nullptr, rows[c].bytes, {}, {}, rows[c].vec};
  push_items::plan(p);
  return p;
}

// times[token - first_token][copy][vector]: how many items pushed that vector.
using push_counts = std::vector<std::vector<std::vector<int>>>;

push_counts coverage(const dispatch_params& p, int first_token, int tokens, int nwarps) {
  push_counts times(tokens);
  for (auto& copies : times) {
    copies.resize(p.num_copies);
    for (int c = 0; c < p.num_copies; ++c) copies[c].assign(p.copies[c].row_bytes / p.copies[c].vec_bytes, 0);
  }
  const push_items items(p, tokens, nwarps);
  for (int i = 0; i < items.count(); ++i) {
    const push_items::item it = items.at(p, first_token, i);
    const int t = it.token - first_token;
    if (t < 0 || t >= tokens || it.copy < 0 || it.copy >= it.copy_end || it.copy_end > p.num_copies) {
      ADD_FAILURE() << "item " << i << " names token " << it.token << ", copies [" << it.copy << ", " << it.copy_end
                    << ")";
      continue;
    }
    for (int c = it.copy; c < it.copy_end; ++c) {
      std::size_t first = 0, end = 0;
      push_items::slice_range(times[t][c].size(), it.slice, it.slices, first, end);
      for (std::size_t v = first; v < end; ++v) ++times[t][c][v];
    }
  }
  return times;
}

const std::vector<std::vector<row>> kPayloadSets = {
    {{14336, 16}, {32, 16}, {32, 16}},             // BF16 H=7168, fp32 weights, int32 ids (k=8)
    {{7168, 16}, {224, 16}, {32, 16}, {32, 16}},   // FP8 + 1x128 fp32 scales
    {{5760, 16}, {2000, 8}, {64, 4}, {7, 1}},      // H=2880, odd rows, narrow vectors
    {{64, 16}},                                    // ids only: every copy is small
    {{100000, 16}},                                // one huge row: only sliced items
    {{32, 16}, {14336, 16}, {7, 1}, {4096, 16}},   // small copies before and between large ones
};

TEST(PushItems, ThePlanPutsTheSlicedCopiesFirstEachInCopyOrder) {
  const dispatch_params mixed = params_for(kPayloadSets.back());
  EXPECT_EQ(mixed.order.large, 2);
  EXPECT_EQ(mixed.order.small, 2);
  const int expected[] = {1, 3, 0, 2};
  for (int i = 0; i < 4; ++i) EXPECT_EQ(mixed.order.copy[i], expected[i]) << "position " << i;
  // T = 1 on 16 warps: 7 slices of each large copy, then the two small copies.
  const push_items one(mixed, 1, 16);
  EXPECT_EQ(one.slices, 7);
  EXPECT_EQ(one.at(mixed, 0, 0).copy, 1);
  EXPECT_EQ(one.at(mixed, 0, 7).copy, 3);
  EXPECT_EQ(one.at(mixed, 0, 14).copy, 0);
  EXPECT_EQ(one.at(mixed, 0, 15).copy, 2);
}

TEST(PushItems, SliceBoundsAreTheSameOnBothSidesOfTheNarrowDivision) {
  for (const std::size_t nvec : {std::size_t{0}, std::size_t{1}, std::size_t{895}, std::size_t{896},
                                 (std::size_t{1} << 31) - 1, std::size_t{1} << 31, (std::size_t{1} << 32) - 2,
                                 (std::size_t{1} << 32) - 1, (std::size_t{1} << 33) + 5})
    for (int slices : {1, 2, 7, 14, 15}) {
      std::size_t covered = 0, previous_end = 0;
      for (int s = 0; s < slices; ++s) {
        std::size_t first = 0, end = 0;
        push_items::slice_range(nvec, s, slices, first, end);
        const std::size_t per = (nvec + slices - 1) / slices;  // the 64-bit reference
        EXPECT_EQ(first, per * s) << nvec << " vectors, slice " << s << " of " << slices;
        if (end > first) {
          EXPECT_EQ(first, previous_end);
          covered += end - first;
          previous_end = end;
        }
      }
      EXPECT_EQ(covered, nvec) << nvec << " vectors in " << slices << " slices";
    }
}

TEST(PushItems, EveryVectorIsPushedExactlyOnce) {
  for (const auto& rows : kPayloadSets) {
    const dispatch_params p = params_for(rows);
    for (int tokens : {0, 1, 2, 3, 7, 15, 16, 17, 64, 513}) {
      for (int nwarps : {1, 2, 16, 32}) {
        const push_counts times = coverage(p, 5, tokens, nwarps);
        for (int t = 0; t < tokens; ++t)
          for (int c = 0; c < p.num_copies; ++c)
            for (std::size_t v = 0; v < times[t][c].size(); ++v)
              ASSERT_EQ(times[t][c][v], 1) << "token " << t << " copy " << c << " vector " << v << " (tokens "
                                           << tokens << ", warps " << nwarps << ")";
      }
    }
  }
}

TEST(PushItems, SmallBatchesGiveEachWarpOneItem) {
  const dispatch_params bf16 = params_for(kPayloadSets[0]);
  // T=1 and T=128 over 64 CTAs: 1 and 2 tokens for 16 warps. 14 hidden slices + ids + weights.
  const push_items one(bf16, 1, 16);
  EXPECT_FALSE(one.whole_tokens);
  EXPECT_EQ(one.slices, 14);
  EXPECT_EQ(one.count(), 16);
  const push_items two(bf16, 2, 16);
  EXPECT_EQ(two.slices, 6);
  EXPECT_EQ(two.count(), 16);
  // The small copies come after the sliced ones and are whole rows.
  const push_items::item last = one.at(bf16, 0, 15);
  EXPECT_EQ(last.copy, 2);
  EXPECT_EQ(last.slices, 1);
  EXPECT_EQ(one.at(bf16, 0, 0).copy, 0);
}

TEST(PushItems, LargeBatchesPushWholeTokens) {
  const dispatch_params fp8 = params_for(kPayloadSets[1]);
  const push_items items(fp8, 64, 16);  // T=4096 over 64 CTAs
  EXPECT_TRUE(items.whole_tokens);
  EXPECT_EQ(items.count(), 64);
  const push_items::item it = items.at(fp8, 100, 7);
  EXPECT_EQ(it.token, 107);
  EXPECT_EQ(it.copy, 0);
  EXPECT_EQ(it.copy_end, 4);
  EXPECT_EQ(it.slices, 1);
}

}  // namespace

// A quantizing copy (copy_spec::quantize) is cut into warp steps of 32 x N elements (N = 16 or
// 8, its vec_bytes), not into vectors: the kernel slices the row's steps with slice_range. Every
// step of every token is covered exactly once by the items, whatever the lane width; and a
// quantizing copy is a one-round copy only up to 1024 elements (a round is kPushUnroll 16-byte
// bf16 loads per lane), whatever its vec_bytes.
TEST(PushItems, QuantizingCopiesCoverEveryStepOnceAndRoundAt1024Elements) {
  for (int vec : {8, 16}) {
    for (std::size_t hidden : {std::size_t{8}, std::size_t{1000}, std::size_t{1024}, std::size_t{1040},
                               std::size_t{2048}, std::size_t{7168}}) {
      if (vec == 16 && hidden % 16 != 0) continue;  // planning gives 8 then
      dispatch_params p = params_for({{32, 16}, {hidden, vec}, {32, 16}});
      p.copies[1].quantize = true;
      push_items::plan(p);  // as dispatch_op plans: after the copies are complete
      EXPECT_EQ(push_items::one_round(p.copies[1]), hidden <= 1024) << hidden << " with " << vec;
      EXPECT_EQ(p.order.large, hidden <= 1024 ? 0 : 1) << hidden << " with " << vec;
      const std::size_t steps = (hidden + 32 * std::size_t(vec) - 1) / (32 * std::size_t(vec));
      for (int tokens : {1, 2, 5, 16, 40}) {
        const push_items items(p, tokens, 16);
        std::vector<std::vector<int>> covered(static_cast<std::size_t>(tokens), std::vector<int>(steps, 0));
        for (int i = 0; i < items.count(); ++i) {
          const push_items::item it = items.at(p, 0, i);
          for (int c = it.copy; c < it.copy_end; ++c) {
            if (c != 1) continue;
            std::size_t first = 0, end = 0;
            push_items::slice_range(steps, it.slice, it.slices, first, end);
            for (std::size_t s = first; s < end; ++s) ++covered[static_cast<std::size_t>(it.token)][s];
          }
        }
        for (int t = 0; t < tokens; ++t)
          for (std::size_t s = 0; s < steps; ++s)
            ASSERT_EQ(covered[static_cast<std::size_t>(t)][s], 1)
                << "hidden " << hidden << ", vec " << vec << ", T " << tokens << ", token " << t << ", step " << s;
      }
    }
  }
}
