// The NCCL messages between NVLink domains, planned on every rank of a group: NCCL pairs a
// pair's sends and receives in the order they are posted, so rank r's k-th message to d must
// have the size of d's k-th message from r, and land where d's kernels read it.
#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

#include "epgraph/comm/session_view.hpp"
#include "epgraph/comm/workspace_layout.hpp"
#include "remote_transport.hpp"

using namespace epgraph;

namespace {

comm::ep_config group(int ep, int L) {
  comm::ep_config c;
  c.ep_size = ep;
  c.domain_size = L;
  c.max_tokens_per_rank = 48;
  c.top_k = 4;
  c.num_experts = 8 * ep;
  c.hidden = 320;
  c.payloads = {{"hidden", 640}, {"scales", 12}, {"weights", 16}};
  return c;
}

// Rank r's view, built as the session builds it, with fake, non-overlapping base addresses
// (never dereferenced).
comm::session_view view_of(const comm::ep_config& c, const comm::workspace_layout& l, int r) {
  const std::uintptr_t base = (std::uintptr_t{1} << 40) * static_cast<std::uintptr_t>(r + 1);
  return comm::make_session_view(c, l, r, nullptr, reinterpret_cast<char*>(base),
                                 reinterpret_cast<char*>(base + (std::uintptr_t{1} << 36)),
                                 reinterpret_cast<char*>(base + (std::uintptr_t{2} << 36)));
}

std::size_t offset(const void* p, const char* base) {
  return static_cast<std::size_t>(static_cast<const char*>(p) - base);
}

}  // namespace

TEST(ExchangePlan, EveryPairPostsMatchingMessagesInTheSameOrder) {
  for (auto [ep, L] : {std::pair{2, 1}, std::pair{4, 1}, std::pair{4, 2}, std::pair{8, 2}, std::pair{8, 4}, std::pair{6, 3}}) {
    const comm::ep_config c = group(ep, L);
    const comm::workspace_layout l = comm::plan_workspace(c);
    const std::vector<std::size_t> rows = {640, 12, 16};
    std::vector<comm::session_view> views;
    std::vector<kernels::detail::exchange_plan> plans;
    for (int r = 0; r < ep; ++r) {
      views.push_back(view_of(c, l, r));
      plans.push_back(kernels::detail::plan_exchanges(views.back(), rows));
    }
    for (int r = 0; r < ep; ++r) {
      const auto& mine = plans[r];
      ASSERT_EQ(static_cast<int>(mine.peers.size()), ep - L);
      for (std::size_t i = 0; i < mine.peers.size(); ++i) {
        const int d = mine.peers[i];
        SCOPED_TRACE("ep " + std::to_string(ep) + ", L " + std::to_string(L) + ": rank " + std::to_string(r) +
                     " -> " + std::to_string(d));
        EXPECT_NE(d / L, r / L) << "a peer of the same domain in the plan";
        if (i > 0) {
          EXPECT_LT(mine.peers[i - 1], d) << "peers not in rank order";
        }
        // d's entry for r.
        const auto& theirs = plans[d];
        std::size_t j = 0;
        while (j < theirs.peers.size() && theirs.peers[j] != r) ++j;
        ASSERT_LT(j, theirs.peers.size());
        for (auto [a, b] : {std::pair{&mine.dispatch[i], &theirs.dispatch[j]}, std::pair{&mine.combine[i], &theirs.combine[j]}}) {
          ASSERT_EQ(a->size(), b->size());
          for (std::size_t k = 0; k < a->size(); ++k) EXPECT_EQ((*a)[k].bytes, (*b)[k].bytes) << "message " << k;
        }
        // Where d receives r's dispatch rows: block [r] of its receive regions, its count slot r.
        const auto& recv = theirs.dispatch[j];
        const char* w = views[d].window_local;
        ASSERT_EQ(recv.size(), 1u + rows.size() + 2u);  // ids, payloads, count, word
        EXPECT_EQ(offset(recv[0].recv, w), l.topk_ids.offset + std::size_t(r) * c.max_tokens_per_rank * c.top_k * 4);
        for (std::size_t p = 0; p < rows.size(); ++p)
          EXPECT_EQ(offset(recv[1 + p].recv, w), l.payloads[p].offset + std::size_t(r) * c.max_tokens_per_rank * rows[p]);
        EXPECT_EQ(offset(recv[1 + rows.size()].recv, w), l.counts.offset + std::size_t(r) * 4);
        // What r sends d: its staging for d, and its combine rows of d's tokens.
        const auto& sent = mine.dispatch[i];
        const std::size_t ri = static_cast<std::size_t>(views[r].remote_index(d));
        EXPECT_EQ(offset(sent[0].send, views[r].remote_state),
                  l.staged_topk_ids.offset + ri * c.max_tokens_per_rank * c.top_k * 4);
        EXPECT_EQ(offset(mine.combine[i][0].send, views[r].window_local),
                  l.combine.offset + std::size_t(d) * c.max_tokens_per_rank * l.combine_row_bytes);
        // Where d receives r's combine rows: remote_partials at d's remote index of r.
        EXPECT_EQ(offset(theirs.combine[j][0].recv, views[d].remote_state),
                  l.remote_partials.offset + std::size_t(views[d].remote_index(r)) * c.max_tokens_per_rank *
                                                 l.combine_row_bytes);
      }
    }
  }
}

TEST(ExchangePlan, TheViewPlacesEveryRankInItsDomain) {
  const comm::ep_config c = group(8, 2);
  const comm::workspace_layout l = comm::plan_workspace(c);
  for (int r = 0; r < 8; ++r) {
    const comm::session_view v = view_of(c, l, r);
    EXPECT_EQ(v.domain_size, 2);
    EXPECT_EQ(v.domain_first, r / 2 * 2);
    EXPECT_EQ(v.lsa_rank, r % 2);
    EXPECT_TRUE(v.in_domain(r));
    EXPECT_TRUE(v.in_domain(r ^ 1));
    EXPECT_FALSE(v.in_domain((r + 2) % 8));
  }
  comm::ep_config one = group(8, 0);
  const comm::session_view v = view_of(one, comm::plan_workspace(one), 5);
  EXPECT_EQ(v.domain_size, 8);
  EXPECT_EQ(v.domain_first, 0);
  EXPECT_EQ(v.lsa_rank, 5);
  EXPECT_EQ(v.deadline_ns, 30000000000ull);  // the default 30 s
}

TEST(ExchangePlan, NoTwoMessagesOfARankLandOnTheSameBytes) {
  const comm::ep_config c = group(8, 2);
  const comm::workspace_layout l = comm::plan_workspace(c);
  const comm::session_view v = view_of(c, l, 5);
  const auto plan = kernels::detail::plan_exchanges(v, {640, 12, 16});
  std::vector<std::pair<std::uintptr_t, std::uintptr_t>> ranges;
  std::vector<kernels::detail::exchange_message> all;
  for (const auto* exchange : {&plan.dispatch, &plan.combine})
    for (const auto& peer : *exchange) all.insert(all.end(), peer.begin(), peer.end());
  all.push_back(plan.combine_mark);
  all.push_back(plan.dispatch_done);
  {
    for (const auto& m : all) {
        const auto b = reinterpret_cast<std::uintptr_t>(m.recv);
        ranges.push_back({b, b + m.bytes});
        // Inside the buffer it belongs to.
        const bool in_window = m.recv >= v.window_local && b + m.bytes <= reinterpret_cast<std::uintptr_t>(v.window_local) + l.window_bytes;
        const bool in_remote = m.recv >= v.remote_state && b + m.bytes <= reinterpret_cast<std::uintptr_t>(v.remote_state) + l.remote_bytes;
        EXPECT_TRUE(in_window || in_remote);
      }
  }
  for (std::size_t i = 0; i < ranges.size(); ++i)
    for (std::size_t j = i + 1; j < ranges.size(); ++j)
      EXPECT_FALSE(ranges[i].first < ranges[j].second && ranges[j].first < ranges[i].second) << i << " " << j;
  // One domain: nothing to exchange.
  comm::ep_config one = group(8, 0);
  EXPECT_TRUE(kernels::detail::plan_exchanges(view_of(one, comm::plan_workspace(one), 3), {640, 12, 16}).peers.empty());
}

// The combine exchange's first message goes to the rank itself: combine_started (a constant 1,
// not the dispatch word, which is 0 before the first dispatch) into its combine_mark, the
// guard's sign that the combine exchange runs (exchange_guard.hpp).
TEST(ExchangePlan, TheCombineExchangeMarksItsStartWithACopyToItself) {
  const comm::ep_config c = group(6, 3);
  const comm::workspace_layout l = comm::plan_workspace(c);
  for (int r = 0; r < 6; ++r) {
    const comm::session_view v = view_of(c, l, r);
    const auto plan = kernels::detail::plan_exchanges(v, {640, 12, 16});
    EXPECT_EQ(plan.self, r);
    EXPECT_EQ(plan.combine_mark.bytes, sizeof(std::uint64_t));
    EXPECT_EQ(offset(plan.combine_mark.send, v.remote_state), l.combine_started.offset);
    EXPECT_EQ(offset(plan.combine_mark.recv, v.remote_state), l.combine_mark.offset);
    EXPECT_EQ(plan.dispatch_done.send, plan.dispatch.at(0).back().send) << "not the dispatch word";
    EXPECT_EQ(offset(plan.dispatch_done.recv, v.remote_state), l.dispatch_done.offset);
  }
}
