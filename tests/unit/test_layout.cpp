#include <gtest/gtest.h>

#include <type_traits>

#include "epgraph/comm/error.hpp"
#include "epgraph/comm/faults.hpp"
#include "epgraph/comm/session_view.hpp"
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
  EXPECT_EQ(l.push_claims.bytes, 32u * launch_word_stride);
  EXPECT_EQ(l.dispatched.bytes, 4u);
  EXPECT_EQ(l.faults.bytes, sizeof(device_faults));
  EXPECT_EQ(l.expert_counts.bytes, 32u * 4);
  EXPECT_EQ(l.expert_load.bytes, 33u * 8);  // 64-bit counts per local expert, then received tokens
  std::vector<region> local = {l.token_slots, l.lookback,      l.launches,    l.push_claims,
                               l.dispatched,  l.faults,        l.expert_counts, l.expert_load};
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
                           "token_slots", "lookback", "launches", "push_claims", "dispatched", "dispatch_word", "faults",
                           "expert_counts", "expert_load"})
    EXPECT_NE(text.find(name), std::string::npos) << name;
}

TEST(Layout, OneDomainHasNoRemoteState) {
  auto l = plan_workspace(shape(4, 256, 1024));
  for (const region& r : {l.staged_topk_ids, l.staged_payloads[0], l.staged_counts, l.remote_words, l.combine_mark,
                          l.combine_started, l.combines_done, l.dispatch_done, l.remote_partials})
    EXPECT_EQ(r.bytes, 0u);
  EXPECT_EQ(l.remote_bytes, 0u);
  for (const named_region& r : list_regions(l)) EXPECT_EQ(r.name.find("staged"), std::string::npos) << r.name;
}

TEST(Layout, SeveralDomainsStageFixedSlabsPerRemoteRank) {
  auto c = shape(8, 512, 1024);
  c.domain_size = 2;  // 4 domains of 2: every rank has 6 remote ranks
  auto l = plan_workspace(c);
  EXPECT_EQ(l.arrivals.bytes, 2u * 64 * 8);  // progress words only from the domain's ranks
  EXPECT_EQ(l.topk_ids.bytes, 8u * 512 * 8 * 4);  // receive regions still have a block per source
  EXPECT_EQ(l.staged_topk_ids.bytes, 6u * 512 * 8 * 4);
  EXPECT_EQ(l.staged_payloads[0].bytes, 6u * 512 * 1024 * 2);
  EXPECT_EQ(l.staged_payloads[1].bytes, 6u * 512 * 32);
  EXPECT_EQ(l.staged_counts.bytes, 6u * 4);
  EXPECT_EQ(l.remote_words.bytes, 2u * 6 * 8);
  EXPECT_EQ(l.combine_mark.bytes, 8u);
  EXPECT_EQ(l.combine_started.bytes, 8u);
  EXPECT_EQ(l.combines_done.bytes, 8u);
  EXPECT_EQ(l.dispatch_done.bytes, 8u);
  EXPECT_EQ(l.remote_partials.bytes, 6u * 512 * 1024 * 2);
  // The remote state is an allocation of its own (cuMem, so NCCL can register it).
  std::vector<region> remote = {l.staged_topk_ids, l.staged_payloads[0], l.staged_payloads[1], l.staged_counts,
                                l.remote_words, l.combine_mark, l.combine_started, l.combines_done,
                                l.dispatch_done, l.remote_partials};
  std::size_t sum = 0;
  for (std::size_t i = 0; i < remote.size(); ++i) {
    EXPECT_EQ(remote[i].offset % region_alignment, 0u) << i;
    EXPECT_LE(remote[i].end(), l.remote_bytes) << i;
    sum += remote[i].bytes;
    for (std::size_t j = i + 1; j < remote.size(); ++j) EXPECT_FALSE(overlaps(remote[i], remote[j])) << i << "," << j;
  }
  EXPECT_EQ(l.remote_bytes % window_granularity, 0u);
  EXPECT_LE(l.remote_bytes - sum, remote.size() * region_alignment + window_granularity);
  EXPECT_EQ(workspace_bytes_per_rank(c), l.window_bytes + l.local_bytes + l.remote_bytes);
  const std::string text = describe(l);
  for (const char* name : {"staged_topk_ids", "staged_payload[0]", "staged_counts", "remote_words", "combine_mark",
                           "combine_started", "combines_done", "dispatch_done", "remote_partials"})
    EXPECT_NE(text.find(name), std::string::npos) << name;
}

// The kernels' and the transport's indexing of domain members and remote ranks.
TEST(Layout, DomainMembersAndRemoteRanksAreIndexedInRankOrder) {
  for (int L : {1, 2, 4, 8}) {
    for (int rank = 0; rank < 8; ++rank) {
      session_view v{};
      v.rank = rank;
      v.ep_size = 8;
      v.max_tokens = 16;
      v.domain_size = L;
      v.domain_first = rank - rank % L;
      v.lsa_rank = rank % L;
      int next_remote = 0;
      for (int d = 0; d < 8; ++d) {
        const bool member = d / L == rank / L;
        EXPECT_EQ(v.in_domain(d), member) << L << " " << rank << " " << d;
        if (member) {
          EXPECT_EQ(v.lsa_peer(d), d % L);
          continue;
        }
        EXPECT_EQ(v.remote_index(d), next_remote) << L << " " << rank << " " << d;
        EXPECT_EQ(v.remote_rank(next_remote), d);
        ++next_remote;
      }
      EXPECT_EQ(next_remote, 8 - L);
      region r{1024, 0};
      EXPECT_EQ(v.remote_row_offset(r, v.remote_rank(0), 3, 100), 1024u + 3 * 100);
      if (8 - L > 1) {
        EXPECT_EQ(v.remote_row_offset(r, v.remote_rank(1), 0, 100), 1024u + 16 * 100);
      }
    }
  }
}
