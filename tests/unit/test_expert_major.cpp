// Sizing of the expert-major buffers (issue 14, planning only): both forms, the default and an
// explicit capacity, the weights, and the rejected specs; which layouts skip CUB's scan.
#include <gtest/gtest.h>

#include <string>

#include "epgraph/comm/error.hpp"
#include "epgraph/comm/expert_major_layout.hpp"
#include "expert_major_params.hpp"  // (kernels/src) which layouts skip CUB's scan

using namespace epgraph::comm;

namespace {

ep_config config() {
  ep_config c;
  c.ep_size = 4;
  c.max_tokens_per_rank = 128;
  c.top_k = 8;
  c.num_experts = 256;  // 64 per rank
  c.hidden = 7168;
  c.payloads = {{"hidden", 7168 * 2}, {"scales", 56 * 4}};
  return c;
}

std::string rejection(const expert_major_spec& spec) {
  try {
    (void)plan_expert_major(config(), spec);
  } catch (const error& e) {
    return e.what();
  }
  return {};
}

}  // namespace

TEST(ExpertMajor, PackedHoldsEveryRowARankCanReceive) {
  const expert_major_layout l = plan_expert_major(config(), {});
  EXPECT_EQ(l.form, expert_major_form::packed);
  EXPECT_EQ(l.local_slots, 64);
  EXPECT_EQ(l.rows, 4u * 128u * 8u);  // every received token, at most top_k of its entries here
  EXPECT_EQ(l.payloads[0].bytes, l.rows * 7168 * 2);
  EXPECT_EQ(l.payloads[1].bytes, l.rows * 56 * 4);
  EXPECT_EQ(l.origins.bytes, l.rows * 3 * 4);
  EXPECT_EQ(l.weights.bytes, 0u);
  EXPECT_TRUE(l.copy_rows);
  EXPECT_EQ(l.receive_rows.bytes, 0u);  // rows copied: no receive indices
  EXPECT_EQ(l.counts.bytes, 64u * 4u);
  EXPECT_EQ(l.offsets.bytes, 65u * 8u);
  EXPECT_EQ(l.output.bytes, l.rows * 7168 * 2);          // the expert stage's rows, combine type (bf16)
  EXPECT_EQ(l.entry_rows.bytes, 4u * 128u * 8u * 4u);     // [ep][max_tokens][k] int32
  EXPECT_EQ(l.chunks, 4 * 4);                             // 128 receive slots = 4 chunks of 32 per source
  EXPECT_EQ(l.chunk_counts.bytes, 64u * 16u * 4u);
  EXPECT_TRUE(l.inline_scan);                             // 16 chunks x 64 slots: place sums the counts
  EXPECT_EQ(l.chunk_starts.bytes, 0u);                    // so no scanned starts
  // Back to back, aligned, nothing overlapping, all inside `bytes`.
  EXPECT_EQ(l.demand.bytes, 64u * 4u);
  EXPECT_EQ(l.dropped.bytes, 8u);
  const region order[] = {l.payloads[0], l.payloads[1], l.output,     l.origins,      l.weights,
                          l.receive_rows, l.counts,     l.offsets,    l.demand,       l.dropped,
                          l.entry_rows,   l.chunk_counts, l.chunk_starts};
  std::size_t end = 0;
  for (const region& r : order) {
    EXPECT_EQ(r.offset % region_alignment, 0u);
    EXPECT_GE(r.offset, end);
    end = r.offset + r.bytes;
  }
  EXPECT_GE(l.bytes, end);
  EXPECT_EQ(l.bytes % region_alignment, 0u);
  // Fewer slots than top_k (large EP): a token gives at most one row per slot.
  expert_major_spec few;
  few.local_slots = 3;
  EXPECT_EQ(plan_expert_major(config(), few).rows, 4u * 128u * 3u);
}

// Rows left in the receive buffers (copy_rows = false): no payload rows, a 4-byte receive index
// per row instead, everything else as with copied rows, in both forms.
TEST(ExpertMajor, IndexedRowsKeepAReceiveIndexInsteadOfThePayloads) {
  for (expert_major_form form : {expert_major_form::packed, expert_major_form::masked}) {
    expert_major_spec spec;
    spec.form = form;
    spec.weights = true;
    const expert_major_layout copied = plan_expert_major(config(), spec);
    spec.copy_rows = false;
    const expert_major_layout l = plan_expert_major(config(), spec);
    EXPECT_FALSE(l.copy_rows);
    EXPECT_EQ(l.rows, copied.rows);
    EXPECT_EQ(l.num_payloads, 2);
    EXPECT_EQ(l.payloads[0].bytes, 0u);
    EXPECT_EQ(l.payloads[1].bytes, 0u);
    EXPECT_EQ(l.receive_rows.bytes, l.rows * 4);
    EXPECT_EQ(l.output.bytes, copied.output.bytes);  // the expert stage still writes expert-major rows
    EXPECT_EQ(l.origins.bytes, copied.origins.bytes);
    EXPECT_EQ(l.weights.bytes, copied.weights.bytes);
    EXPECT_EQ(l.entry_rows.bytes, copied.entry_rows.bytes);
    // The saving: every payload row (7168 * 2 + 56 * 4 bytes) for a 4-byte index, up to the
    // alignment of the three regions that differ and of the total.
    const double saving = double(l.rows) * (7168 * 2 + 56 * 4 - 4);
    EXPECT_NEAR(double(copied.bytes) - double(l.bytes), saving, 4.0 * region_alignment);
    std::size_t end = 0;
    for (const region& r : {l.output, l.origins, l.weights, l.receive_rows, l.counts, l.offsets, l.demand, l.dropped,
                            l.entry_rows, l.chunk_counts, l.chunk_starts}) {
      EXPECT_EQ(r.offset % region_alignment, 0u);
      EXPECT_GE(r.offset, end);
      end = r.offset + r.bytes;
    }
    EXPECT_GE(l.bytes, end);
  }
}

TEST(ExpertMajor, MaskedSlotsHaveTheirCapacity) {
  expert_major_spec spec;
  spec.form = expert_major_form::masked;
  spec.weights = true;
  expert_major_layout l = plan_expert_major(config(), spec);
  EXPECT_EQ(l.capacity, 4u * 128u);  // default: every token a rank can receive
  EXPECT_EQ(l.rows, 64u * 512u);
  EXPECT_EQ(l.weights.bytes, l.rows * 4);
  spec.capacity = 40;
  spec.local_slots = 66;  // a placement with two replica slots more
  l = plan_expert_major(config(), spec);
  EXPECT_EQ(l.capacity, 40u);
  EXPECT_EQ(l.output.bytes, 66u * 40u * 7168u * 2u);
  ep_config odd = config();
  odd.max_tokens_per_rank = 33;  // a partial chunk per source
  EXPECT_EQ(plan_expert_major(odd, spec).chunks, 4 * 2);
  EXPECT_EQ(l.rows, 66u * 40u);
  EXPECT_EQ(l.counts.bytes, 66u * 4u);
}

TEST(ExpertMajor, BadSpecsAreRejectedNamingTheField) {
  expert_major_spec spec;
  spec.capacity = -1;
  EXPECT_NE(rejection(spec).find("expert_major_spec.capacity: is -1"), std::string::npos) << rejection(spec);
  spec = {};
  spec.local_slots = 300;
  EXPECT_NE(rejection(spec).find("expert_major_spec.local_slots: is 300, outside [0, num_experts = 256]"),
            std::string::npos)
      << rejection(spec);
  spec = {};
  spec.form = static_cast<expert_major_form>(3);
  EXPECT_NE(rejection(spec).find("expert_major_spec.form: is 3"), std::string::npos) << rejection(spec);
  ep_config bad = config();
  bad.top_k = 0;
  EXPECT_THROW(plan_expert_major(bad, {}), error);  // the config is validated first
}

// Which layouts skip CUB's scan (place sums the chunk counts itself): at most 32 chunks, 128
// slots and 2048 counts. The decode sessions the rule is for do; each bound alone sends a
// layout to CUB's scan.
TEST(ExpertMajor, SmallLayoutsSkipTheScanAndEachBoundSendsOneToIt) {
  auto layout = [](int ep, int max_tokens, int slots_per_rank) {
    ep_config c = config();
    c.ep_size = ep;
    c.max_tokens_per_rank = max_tokens;
    c.num_experts = ep * slots_per_rank;
    return plan_expert_major(c, {});
  };
  using epgraph::kernels::detail::inline_scan;
  EXPECT_TRUE(inline_scan(layout(4, 128, 64)));   // 16 chunks x 64 slots
  EXPECT_TRUE(inline_scan(layout(4, 256, 64)));   // 32 x 64 = 2048: every bound reached
  EXPECT_TRUE(inline_scan(layout(2, 256, 128)));  // 16 x 128 = 2048
  EXPECT_TRUE(inline_scan(layout(2, 1, 128)));    // 2 chunks
  EXPECT_FALSE(inline_scan(layout(4, 257, 8)));   // 36 chunks
  EXPECT_FALSE(inline_scan(layout(2, 512, 128))); // 32 x 128 = 4096 counts (lost 7.6 us inline, perf-notes v31)
  EXPECT_FALSE(inline_scan(layout(2, 32, 136)));  // 136 slots
  EXPECT_FALSE(inline_scan(layout(4, 4096, 64))); // 512 chunks
  // Only the scanned layouts keep the scan's output.
  EXPECT_EQ(layout(4, 256, 64).chunk_starts.bytes, 0u);
  EXPECT_EQ(layout(4, 257, 8).chunk_starts.bytes, 8u * 36u * 4u);
  EXPECT_EQ(layout(2, 512, 128).chunk_starts.bytes, 128u * 32u * 4u);
}
