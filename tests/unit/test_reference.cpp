// The host reference is the yardstick of every GPU test, so it is tested on its own.
#include <gtest/gtest.h>

#include <cmath>
#include <set>

#include "epgraph/comm/expert_placement.hpp"
#include "epgraph/sim/reference.hpp"

using namespace epgraph;
using epgraph::comm::element_type;

TEST(Reference, RoundsToNearestEven) {
  EXPECT_EQ(sim::round_to(element_type::bf16, 1.0f), 1.0f);
  EXPECT_EQ(sim::round_to(element_type::bf16, 1.0f + std::ldexp(1.0f, -8)), 1.0f);  // tie -> even
  EXPECT_EQ(sim::round_to(element_type::bf16, 1.0f + 3 * std::ldexp(1.0f, -8)), 1.0f + std::ldexp(1.0f, -6));
  EXPECT_EQ(sim::round_to(element_type::bf16, -2.5f), -2.5f);
  EXPECT_EQ(sim::round_to(element_type::fp16, 1.0f + std::ldexp(1.0f, -11)), 1.0f);
  EXPECT_EQ(sim::round_to(element_type::fp16, 1.0f + 3 * std::ldexp(1.0f, -11)), 1.0f + std::ldexp(1.0f, -9));
  EXPECT_EQ(sim::round_to(element_type::fp16, 0.1f), 0.0999755859375f);
  EXPECT_EQ(sim::round_to(element_type::fp32, 0.1f), 0.1f);
}

TEST(Reference, DispatchOfHandMadeRouting) {
  sim::problem p;
  p.ep_size = 2;
  p.num_experts = 4;  // experts 0,1 on rank 0; 2,3 on rank 1
  p.top_k = 2;
  p.max_tokens = 8;
  sim::routing_table r;
  r.tokens = {4, 1};
  r.ids = {{0, 1, 2, 3, 1, 2, -1, 9}, {3, 0}};
  auto e = sim::expect_dispatch(p, r);
  EXPECT_EQ(e.counts[0], (std::vector<int>{2, 1}));  // rank 0 receives 2 from src 0, 1 from src 1
  EXPECT_EQ(e.counts[1], (std::vector<int>{2, 1}));
  EXPECT_EQ(e.slot[0][0], (std::vector<int>{0, -1}));  // both experts on rank 0: one copy
  EXPECT_EQ(e.slot[0][1], (std::vector<int>{-1, 0}));
  EXPECT_EQ(e.slot[0][2], (std::vector<int>{1, 1}));
  EXPECT_EQ(e.slot[0][3], (std::vector<int>{-1, -1}));  // -1 and an invalid id: nowhere
  EXPECT_EQ(e.slot[1][0], (std::vector<int>{0, 0}));
  EXPECT_EQ(e.origin[0][0], (std::vector<int>{0, 2}));
  EXPECT_EQ(e.origin[1][0], (std::vector<int>{1, 2}));
  EXPECT_EQ(e.origin[1][1], (std::vector<int>{0}));
}

TEST(Reference, TokenCountAboveMaxIsClamped) {
  sim::problem p;
  p.ep_size = 1;
  p.num_experts = 2;
  p.top_k = 1;
  p.max_tokens = 2;
  sim::routing_table r{{5}, {{0, 1, 0, 1, 0}}};
  auto e = sim::expect_dispatch(p, r);
  EXPECT_EQ(e.counts[0][0], 2);
}

TEST(Reference, GeneratorDrawsDistinctInRangeExperts) {
  sim::problem p;
  p.ep_size = 4;
  p.num_experts = 16;
  p.top_k = 16;  // every expert: forces the distinctness fallback
  p.max_tokens = 32;
  for (auto dist : {sim::routing::uniform, sim::routing::skewed}) {
    p.dist = dist;
    for (int t = 0; t < 32; ++t) {
      std::set<int> seen;
      for (int j = 0; j < p.top_k; ++j) {
        int e = sim::expert_id(p, 1, 7, t, j);
        EXPECT_GE(e, 0);
        EXPECT_LT(e, p.num_experts);
        seen.insert(e);
      }
      EXPECT_EQ(seen.size(), 16u);
    }
  }
}

TEST(Reference, RoutingDistributionsHaveTheirShape) {
  sim::problem p;
  p.ep_size = 4;
  p.num_experts = 256;
  p.top_k = 8;
  p.max_tokens = 256;
  // Top-k entries of rank 2's first `tokens` tokens, counted per owning rank.
  const auto entries_per_rank = [&](sim::routing dist, int tokens) {
    p.dist = dist;
    std::vector<int> per_rank(4);
    for (int t = 0; t < tokens; ++t)
      for (int j = 0; j < 8; ++j) ++per_rank[sim::owner_rank(p, sim::expert_id(p, 2, 0, t, j))];
    return per_rank;
  };
  EXPECT_EQ(entries_per_rank(sim::routing::one_rank, 64)[0], 64 * 8);
  const auto skewed = entries_per_rank(sim::routing::skewed, 256);
  EXPECT_GT(skewed[0], 2 * skewed[3]);
}

TEST(Reference, TokenCountsVaryWithinBoundsAndEmptyRanksStayEmpty) {
  sim::problem p;
  p.ep_size = 4;
  p.max_tokens = 100;
  p.min_tokens = 10;
  p.empty_ranks = 0b0100;
  std::set<int> seen;
  for (std::uint64_t s = 0; s < 200; ++s) {
    int t = sim::token_count(p, 1, s);
    EXPECT_GE(t, 10);
    EXPECT_LE(t, 100);
    seen.insert(t);
    EXPECT_EQ(sim::token_count(p, 2, s), 0);
  }
  EXPECT_GT(seen.size(), 50u);
}

TEST(Reference, OutputMatchesExactMathWithinTwoRoundings) {
  sim::problem p;
  p.ep_size = 4;
  p.num_experts = 32;
  p.top_k = 8;
  p.hidden = 64;
  p.max_tokens = 16;
  p.min_tokens = 16;
  for (auto type : {element_type::bf16, element_type::fp16, element_type::fp32}) {
    p.dtype = type;
    const double ulp = type == element_type::bf16 ? std::ldexp(1.0, -8) : type == element_type::fp16 ? std::ldexp(1.0, -11) : 1e-7;
    auto out = sim::expect_output(p, 3, 1);
    ASSERT_EQ(out.size(), 16u * 64);
    int nonzero = 0;
    for (int t = 0; t < 16; ++t) {
      for (int h = 0; h < 64; ++h) {
        double exact = 0;
        for (int j = 0; j < 8; ++j) {
          int e = sim::expert_id(p, 1, 3, t, j);
          exact += double(sim::router_weight(p, 1, 3, t, j)) * sim::expert_scale(e) * sim::hidden_value(p, 1, 3, t, h);
        }
        const float got = out[t * 64 + h];
        nonzero += got != 0.f;
        EXPECT_NEAR(got, exact, 8 * ulp * (std::fabs(exact) + 1e-3)) << "t=" << t << " h=" << h;
      }
    }
    EXPECT_GT(nonzero, 16 * 64 / 2);  // never a test on zeros
  }
}

// The host reference and the device check share expected_output's formula for the exact path:
// the host's loop (per rank, then per element) must give the same bits.
TEST(Reference, ExactOutputIsTheSharedFormulaBitForBit) {
  sim::problem p;
  p.ep_size = 4;
  p.num_experts = 32;
  p.hidden = 200;
  p.max_tokens = p.min_tokens = 12;
  for (auto type : {element_type::bf16, element_type::fp32}) {
    p.dtype = type;
    const auto out = sim::expect_output(p, 2, 3);
    const auto round = [&](float v) { return sim::round_to(type, v); };
    long long differ = 0;
    for (int t = 0; t < 12; ++t) {
      int experts[8];
      float weights[8];
      for (int j = 0; j < 8; ++j) {
        experts[j] = sim::expert_id(p, 3, 2, t, j);
        weights[j] = sim::router_weight(p, 3, 2, t, j);
      }
      for (int h = 0; h < p.hidden; ++h)
        differ += out[std::size_t(t) * p.hidden + h] !=
                  sim::expected_output(p, experts, weights, round(sim::hidden_value(p, 3, 2, t, h)), round);
    }
    EXPECT_EQ(differ, 0);
  }
}

// Reduced precisions: the quantized input and the reduced combine stay within their rounding of
// the exact output, and differ from it (they are not the exact path by accident).
TEST(Reference, ReducedPrecisionOutputsStayWithinTheirRounding) {
  sim::problem p;
  p.ep_size = 4;
  p.num_experts = 32;
  p.hidden = 1000;  // a partial last block
  p.max_tokens = p.min_tokens = 6;
  struct variant {
    const char* name;
    element_type dtype;
    bool quantize;
    kernels::fp8::scale_format scales;
    kernels::combine_precision combine;
    double bound;  // relative, per element
  };
  const variant variants[] = {
      {"fp8 combine", element_type::bf16, false, kernels::fp8::scale_format::fp32, kernels::combine_precision::fp8, 0.15},
      {"bf16 combine of fp32", element_type::fp32, false, kernels::fp8::scale_format::fp32,
       kernels::combine_precision::bf16, 0.004},
      {"quantized dispatch", element_type::bf16, true, kernels::fp8::scale_format::fp32, kernels::combine_precision::exact,
       0.15},
      {"quantized dispatch, ue8m0", element_type::bf16, true, kernels::fp8::scale_format::ue8m0,
       kernels::combine_precision::exact, 0.15}};
  for (const variant& v : variants) {
    SCOPED_TRACE(v.name);
    p.dtype = v.dtype;
    p.quantize = false;
    p.combine = kernels::combine_precision::exact;
    const auto exact = sim::expect_output(p, 4, 0);
    p.quantize = v.quantize;
    p.scales = v.scales;
    p.combine = v.combine;
    const auto reduced = sim::expect_output(p, 4, 0);
    ASSERT_EQ(reduced.size(), exact.size());
    long long differ = 0, outside = 0;
    for (std::size_t i = 0; i < exact.size(); ++i) {
      differ += reduced[i] != exact[i];
      outside += std::fabs(reduced[i] - exact[i]) > v.bound * std::fabs(exact[i]) + 1e-6;
    }
    // The problem's hidden values are multiples of 1/8 in [-1, 1]: a block's power-of-two scale
    // 2^-8 maps them onto multiples of 32 up to 256, all e4m3 values, so UE8M0 is exact there;
    // 448 / amax maps 3/8 to 168, which e4m3 rounds.
    if (v.quantize && v.scales == kernels::fp8::scale_format::ue8m0)
      EXPECT_EQ(differ, 0);
    else
      EXPECT_GT(differ, 0);
    EXPECT_EQ(outside, 0);
  }
}

// The expert-major order (each expert row rounded to dtype, then weighted) gives the same bits
// as the source-major one on the problem's exact hidden values and on UE8M0-quantized ones,
// but not on fp32-scale-quantized ones: the references must follow the step's order.
TEST(Reference, ExpertMajorOrderMattersOnlyForInexactExpertRows) {
  sim::problem p;
  p.ep_size = 2;
  p.num_experts = 16;
  p.hidden = 512;
  p.max_tokens = p.min_tokens = 8;
  const auto differing = [&](bool quantize, kernels::fp8::scale_format scales) {
    p.quantize = quantize;
    p.scales = scales;
    p.expert_major = false;
    const auto source_major = sim::expect_output(p, 1, 0);
    p.expert_major = true;
    const auto expert_major = sim::expect_output(p, 1, 0);
    long long n = 0;
    for (std::size_t i = 0; i < source_major.size(); ++i) n += source_major[i] != expert_major[i];
    return n;
  };
  EXPECT_EQ(differing(false, kernels::fp8::scale_format::fp32), 0);
  EXPECT_EQ(differing(true, kernels::fp8::scale_format::ue8m0), 0);
  EXPECT_GT(differing(true, kernels::fp8::scale_format::fp32), 0);
}

TEST(Reference, CountWrongFindsEveryDifferingElement) {
  sim::problem p;
  p.ep_size = 2;
  p.num_experts = 16;
  p.top_k = 4;
  p.hidden = 48;
  p.max_tokens = p.min_tokens = 8;
  for (auto type : {element_type::bf16, element_type::fp32}) {
    p.dtype = type;
    const auto expected = sim::expect_output(p, 5, 1);
    const std::size_t elem = comm::element_size(type);
    std::vector<unsigned char> bytes(expected.size() * elem);
    for (std::size_t i = 0; i < expected.size(); ++i) sim::store_element(type, expected[i], &bytes[i * elem]);
    EXPECT_EQ(sim::count_wrong(p, 5, 1, bytes.data()), 0);
    EXPECT_GT(sim::count_wrong(p, 6, 1, bytes.data()), 0);  // another step's output
    sim::store_element(type, expected[3] + 1.f, &bytes[3 * elem]);
    sim::store_element(type, expected.back() * 2.f + 1.f, &bytes[bytes.size() - elem]);
    EXPECT_EQ(sim::count_wrong(p, 5, 1, bytes.data()), 2);
  }
}

// The expert-major order of the host reference: the hand-made routing above, rank 0,
// with the default placement and with expert 1 replicated onto rank 1.
TEST(Reference, ExpertMajorOrderOfHandMadeRouting) {
  sim::problem p;
  p.ep_size = 2;
  p.num_experts = 4;
  p.top_k = 2;
  p.max_tokens = 8;
  sim::routing_table r;
  r.tokens = {4, 1};
  r.ids = {{0, 1, 2, 3, 1, 2, -1, 9}, {3, 0}};
  auto row = [](int src, int slot, int entry) { return sim::expert_row{src, slot, entry}; };
  auto same = [](const std::vector<sim::expert_row>& a, const std::vector<sim::expert_row>& b) {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i)
      if (a[i].src != b[i].src || a[i].slot != b[i].slot || a[i].entry != b[i].entry) return false;
    return true;
  };
  const auto rows = sim::expect_expert_major(p, r, comm::contiguous_placement(4, 2), 0);
  ASSERT_EQ(rows.size(), 2u);
  // Expert 0: token 0 of src 0 (slot 0, entry 0), token 0 of src 1 (slot 0, entry 1).
  EXPECT_TRUE(same(rows[0], {row(0, 0, 0), row(1, 0, 1)}));
  // Expert 1: token 0 of src 0 (slot 0, entry 1), token 2 of src 0 (slot 1, entry 0).
  EXPECT_TRUE(same(rows[1], {row(0, 0, 1), row(0, 1, 0)}));
  EXPECT_EQ(sim::packed_offsets(rows), (std::vector<std::int64_t>{0, 2, 4}));

  // Expert 1 gets a second replica (physical 4) in a new slot 2 of rank 1: odd tokens use it.
  comm::expert_placement q = comm::contiguous_placement(4, 2);
  q.local_slots = 3;
  q.replica_offsets = {0, 1, 3, 4, 5};
  q.replica_ids = {0, 1, 4, 2, 3};
  q.rank_of.push_back(1);
  q.local_of.push_back(2);
  ASSERT_NO_THROW(comm::validate_placement(q, 2));
  r.ids[0] = {0, 2, 1, 3, 1, 2, -1, 9};  // token 1 now names expert 1 (odd: its replica on rank 1)
  const auto on1 = sim::expect_expert_major(p, r, q, 1);
  ASSERT_EQ(on1.size(), 3u);
  // Rank 1's slots: src 0 tokens 0, 1, 2 (all reach rank 1), src 1 token 0.
  EXPECT_TRUE(same(on1[0], {row(0, 0, 1), row(0, 2, 1)}));  // expert 2
  EXPECT_TRUE(same(on1[1], {row(0, 1, 1), row(1, 0, 0)}));  // expert 3
  EXPECT_TRUE(same(on1[2], {row(0, 1, 0)}));                // expert 1's replica: token 1 only
  const auto on0 = sim::expect_expert_major(p, r, q, 0);
  EXPECT_TRUE(same(on0[1], {row(0, 1, 0)}));  // expert 1 on rank 0: token 2 (slot 1 there)
  // A token that names expert 0 twice gives one row (its first entry).
  r.ids[1] = {0, 0};
  const auto repeated = sim::expect_expert_major(p, r, q, 0);
  EXPECT_TRUE(same(repeated[0], {row(0, 0, 0), row(1, 0, 0)}));
}

// With the default placement the expert-major rows use expect_dispatch's slots, and every valid
// top-k entry appears exactly once, at the rank and slot of its expert (drawn routings).
TEST(Reference, ExpertMajorRowsAgreeWithDispatchUnderTheDefaultPlacement) {
  for (const auto dist : {sim::routing::uniform, sim::routing::skewed}) {
    sim::problem p;
    p.ep_size = 4;
    p.num_experts = 32;
    p.top_k = 6;
    p.max_tokens = 40;
    p.dist = dist;
    const sim::routing_table r = sim::draw_routing(p, 3);
    const auto d = sim::expect_dispatch(p, r);
    const comm::expert_placement placement = comm::contiguous_placement(p.num_experts, p.ep_size);
    long long entries = 0, rows_seen = 0;
    for (int src = 0; src < p.ep_size; ++src)
      for (int t = 0; t < std::min(r.tokens[src], p.max_tokens); ++t)
        for (int j = 0; j < p.top_k; ++j) {
          const int e = r.ids[src][static_cast<std::size_t>(t) * p.top_k + j];
          entries += e >= 0 && e < p.num_experts;
        }
    for (int rank = 0; rank < p.ep_size; ++rank) {
      const auto rows = sim::expect_expert_major(p, r, placement, rank);
      for (std::size_t s = 0; s < rows.size(); ++s)
        for (const auto& row : rows[s]) {
          ++rows_seen;
          const int t = d.origin[rank][row.src].at(static_cast<std::size_t>(row.slot));
          const int e = r.ids[row.src][static_cast<std::size_t>(t) * p.top_k + row.entry];
          ASSERT_EQ(e, rank * placement.local_slots + static_cast<int>(s)) << "src " << row.src << " slot " << row.slot;
        }
    }
    EXPECT_EQ(rows_seen, entries);
    EXPECT_GT(entries, 0);
  }
}

// The weighted un-permute: each received token's rows (over every local slot) in ascending
// top-k entry order, times their weights, summed in fp32, rounded once.
TEST(Reference, UnpermuteSumsARowsExpertsInEntryOrder) {
  // Rank 0 received 2 tokens from src 0 and 1 from src 1; 2 local slots, hidden 2.
  const std::vector<std::vector<sim::expert_row>> rows = {
      {{0, 0, 1}, {1, 0, 0}},  // slot 0: src 0 slot 0 entry 1; src 1 slot 0 entry 0
      {{0, 0, 0}, {0, 1, 2}}};  // slot 1: src 0 slot 0 entry 0; src 0 slot 1 entry 2
  const std::vector<std::vector<std::vector<float>>> y = {{{1.0f, 2.0f}, {10.0f, 20.0f}},
                                                          {{100.0f, 200.0f}, {0.5f, -0.5f}}};
  auto w = [](int src, int slot, int entry) { return 0.25f * static_cast<float>(1 + src + slot + entry); };
  const auto weighted = sim::expect_unpermute(rows, y, {2, 1}, 2, true, w, element_type::fp32);
  ASSERT_EQ(weighted.size(), 2u);
  // src 0 slot 0: entry 0 (y 100, 200, w 0.25) then entry 1 (y 1, 2, w 0.5).
  EXPECT_EQ(weighted[0][0], (std::vector<float>{0.25f * 100 + 0.5f * 1, 0.25f * 200 + 0.5f * 2}));
  EXPECT_EQ(weighted[0][1], (std::vector<float>{1.0f * 0.5f, 1.0f * -0.5f}));  // w(0, 1, 2) = 1
  EXPECT_EQ(weighted[1][0], (std::vector<float>{0.5f * 10, 0.5f * 20}));      // w(1, 0, 0) = 0.5
  const auto plain = sim::expect_unpermute(rows, y, {2, 1}, 2, false, w, element_type::bf16);
  EXPECT_EQ(plain[0][0], (std::vector<float>{101.0f, 202.0f}));
  // Rounded once, after the fp32 sum: 258 in bf16; rounding after each addition would give 256.
  const std::vector<std::vector<sim::expert_row>> three = {{{0, 0, 0}}, {{0, 0, 1}}, {{0, 0, 2}}};
  const std::vector<std::vector<std::vector<float>>> y3 = {{{256.0f}}, {{1.0f}}, {{1.0f}}};
  EXPECT_EQ(sim::expect_unpermute(three, y3, {1}, 1, false, w, element_type::bf16)[0][0][0], 258.0f);
}
