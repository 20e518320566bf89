#include <gtest/gtest.h>

#include <type_traits>

#include "epgraph/comm/error.hpp"
#include "epgraph/comm/faults.hpp"
#include "epgraph/comm/workspace_layout.hpp"

using namespace epgraph::comm;

namespace {
ep_config shape(int ep, int tokens, int hidden) {
  ep_config c;
  c.ep_size = ep;
  c.max_tokens_per_rank = tokens;
  c.top_k = 8;
  c.num_experts = 256;
  c.hidden = hidden;
  c.payloads = {{"hidden", static_cast<std::size_t>(hidden) * 2}, {"weights", 32}};
  return c;
}
bool overlaps(const region& a, const region& b) { return a.offset < b.end() && b.offset < a.end(); }
}  // namespace

TEST(Layout, RegionsAreAlignedDisjointAndInsideTheWindow) {
  auto l = plan_workspace(shape(4, 4096, 7168));
  std::vector<region> window = {l.counts, l.arrivals, l.mailbox, l.topk_ids, l.payloads[0], l.payloads[1], l.combine};
  for (std::size_t i = 0; i < window.size(); ++i) {
    EXPECT_EQ(window[i].offset % region_alignment, 0u) << i;
    EXPECT_LE(window[i].end(), l.window_bytes) << i;
    for (std::size_t j = i + 1; j < window.size(); ++j) EXPECT_FALSE(overlaps(window[i], window[j])) << i << "," << j;
  }
  EXPECT_EQ(l.window_bytes % window_granularity, 0u);
}

TEST(Layout, SizesAreTheRankMajorMinimum) {
  auto c = shape(4, 4096, 7168);
  auto l = plan_workspace(c);
  EXPECT_EQ(l.payloads[0].bytes, 4ull * 4096 * 7168 * 2);
  EXPECT_EQ(l.payloads[1].bytes, 4ull * 4096 * 32);
  EXPECT_EQ(l.topk_ids.bytes, 4ull * 4096 * 8 * 4);
  EXPECT_EQ(l.combine.bytes, 4ull * 4096 * 7168 * 2);
  EXPECT_EQ(l.combine_row_bytes, 7168u * 2);
  EXPECT_EQ(l.arrivals.bytes, 4u * 64 * 8);  // one progress word per (source rank, CTA)
  EXPECT_EQ(l.mailbox.bytes, 3u * 4 * mailbox_slot_bytes);  // two rounds and a "left" mark per rank
  std::size_t payload_sum = l.counts.bytes + l.arrivals.bytes + l.mailbox.bytes + l.topk_ids.bytes +
                            l.payloads[0].bytes + l.payloads[1].bytes + l.combine.bytes;
  // Padding is only alignment: at most one alignment unit per region plus the granularity.
  EXPECT_LE(l.window_bytes - payload_sum, 7 * region_alignment + window_granularity);
  EXPECT_EQ(workspace_bytes_per_rank(c), l.window_bytes + l.local_bytes);
}

TEST(Layout, StridesDependOnlyOnTheStaticMaximum) {
  auto a = plan_workspace(shape(2, 128, 2880));
  auto b = plan_workspace(shape(2, 256, 2880));
  EXPECT_EQ(b.payloads[0].bytes, 2 * a.payloads[0].bytes);
  EXPECT_EQ(b.token_slots.bytes, 2 * a.token_slots.bytes);
}

TEST(Layout, LocalStateHoldsSlotsLookbackLaunchesAndFaults) {
  auto c = shape(8, 512, 1024);
  c.num_ctas = 32;
  auto l = plan_workspace(c);
  EXPECT_EQ(l.token_slots.bytes, 512u * 8 * 4);
  EXPECT_EQ(l.lookback.bytes, 32u * 8 * 8);
  EXPECT_EQ(l.launches.bytes, 32u * launch_word_stride);  // per CTA: one word on a line of its own
  EXPECT_EQ(l.dispatched.bytes, 4u);
  EXPECT_EQ(l.faults.bytes, sizeof(device_faults));
  EXPECT_EQ(l.expert_counts.bytes, 32u * 4);
  std::vector<region> local = {l.token_slots, l.lookback, l.launches, l.dispatched, l.faults, l.expert_counts};
  for (std::size_t i = 0; i < local.size(); ++i) {
    EXPECT_EQ(local[i].offset % region_alignment, 0u) << i;
    EXPECT_LE(local[i].end(), l.local_bytes) << i;
    for (std::size_t j = i + 1; j < local.size(); ++j) EXPECT_FALSE(overlaps(local[i], local[j])) << i << "," << j;
  }
}

TEST(Layout, IsOnePlainValueTheKernelsReceive) {
  static_assert(std::is_trivially_copyable_v<workspace_layout>);
  auto l = plan_workspace(shape(2, 64, 256));
  EXPECT_EQ(l.num_payloads, 2);
  EXPECT_EQ(l.payloads[2].bytes, 0u);  // unused payload slots stay empty
}

TEST(Layout, LargestAllowedConfigIsComputedWithoutWrapping) {
  // Validation limits keep every layout below 2^64; the largest one must still be exact.
  auto c = shape(64, 1 << 20, 1 << 18);
  c.combine_type = element_type::fp32;
  c.payloads.assign(8, {"x", max_row_bytes});
  auto l = plan_workspace(c);
  EXPECT_EQ(l.payloads[7].bytes, std::size_t{64} << 40);
  EXPECT_EQ(l.combine.bytes, std::size_t{64} * (1 << 20) * (1 << 18) * 4);
  EXPECT_EQ(l.combine.end() <= l.window_bytes, true);
  EXPECT_GT(l.window_bytes, std::size_t{9} * (std::size_t{64} << 40));
}

TEST(Layout, DescribeListsEveryRegion) {
  auto text = describe(plan_workspace(shape(2, 64, 256)));
  for (const char* name : {"counts", "arrivals", "mailbox", "topk_ids", "payload[0]", "payload[1]", "combine",
                           "token_slots", "lookback", "launches", "dispatched", "faults", "expert_counts"})
    EXPECT_NE(text.find(name), std::string::npos) << name;
}
