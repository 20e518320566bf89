// The exchange guard's decisions, without a GPU: which exchange a snapshot of the watched words
// shows running, and when the same one has run too long (exchange_guard.hpp); and the deadline
// thread that bounds NCCL's first contact (revoke_at_deadline.hpp).
#include <gtest/gtest.h>

#include <chrono>
#include <thread>
#include <vector>

#include "epgraph/comm/progress.hpp"
#include "epgraph/comm/workspace_layout.hpp"
#include "exchange_guard.hpp"
#include "revoke_at_deadline.hpp"

using namespace epgraph::comm;
using namespace epgraph::comm::detail;
using namespace std::chrono_literals;

namespace {

// Rank 1 of 2 x 2: its remote ranks are 2 and 3.
const std::vector<int> remote_ranks = {2, 3};
const std::uint64_t word5 = progress_word(5, collective_kind::dispatch);
const std::uint64_t word6 = progress_word(6, collective_kind::dispatch);

// Dispatch word, what the copy after the dispatch exchange left, the combine mark, words.
// The combine exchange sets its mark to 1 (combine_started); the guard reads any non-zero mark.
const std::uint64_t started = 1;
exchange_snapshot snap(std::uint64_t dispatch_word, std::uint64_t done, std::uint64_t mark,
                       std::vector<std::uint64_t> words, std::uint64_t combines = 0) {
  return {dispatch_word, done, mark, combines, std::move(words)};
}

const std::uint64_t both = (std::uint64_t{1} << 2) | (std::uint64_t{1} << 3);

}  // namespace

TEST(ExchangeGuard, ReadsWhichExchangeRunsAndWhoIsMissing) {
  // No dispatch yet.
  EXPECT_FALSE(running_exchange(snap(0, 0, 0, {0, 0, 0, 0}), remote_ranks));
  // Dispatch exchange (dispatch 6 written, the copy after its exchange not yet): rank 3's word
  // has not come.
  auto s = running_exchange(snap(word6, word5, 0, {word6, 0, 0, 0}), remote_ranks);
  ASSERT_TRUE(s);
  EXPECT_EQ(s->op, collective_kind::dispatch);
  EXPECT_EQ(s->missing, std::uint64_t{1} << 3);
  EXPECT_EQ(s->dispatch_word, word6);
  // Every word came but the exchange has not completed (this rank's sends): all are named.
  s = running_exchange(snap(word6, word5, 0, {word6, word6, 0, 0}), remote_ranks);
  ASSERT_TRUE(s);
  EXPECT_EQ(s->missing, both);
  // Expert stage: the dispatch exchange completed, the combine exchange has not started.
  EXPECT_FALSE(running_exchange(snap(word6, word6, 0, {word6, word6, 0, 0}), remote_ranks));
  // Combine exchange started (its mark), nothing back yet.
  s = running_exchange(snap(word6, word6, started, {word6, word6, 0, 0}), remote_ranks);
  ASSERT_TRUE(s);
  EXPECT_EQ(s->op, collective_kind::combine);
  EXPECT_EQ(s->missing, both);
  s = running_exchange(snap(word6, word6, started, {word6, word6, word6, 0}), remote_ranks);
  ASSERT_TRUE(s);
  EXPECT_EQ(s->missing, std::uint64_t{1} << 3);
  // Done: the combine kernel cleared the mark (whatever the words: combine judges them).
  const std::uint64_t stopped = progress_word(6, collective_kind::stopped);
  EXPECT_FALSE(running_exchange(snap(word6, word6, 0, {word6, stopped, 0, word5}), remote_ranks));
  // A second combine after the step (no new dispatch): its exchange is watched too.
  s = running_exchange(snap(word6, word6, started, {word6, word6, word6, word6}), remote_ranks);
  ASSERT_TRUE(s);
  EXPECT_EQ(s->op, collective_kind::combine);
  // A combine before any dispatch (dispatch word 0): its exchange is watched as well, and names
  // every remote rank until their words come.
  s = running_exchange(snap(0, 0, started, {0, 0, 0, 0}), remote_ranks);
  ASSERT_TRUE(s);
  EXPECT_EQ(s->op, collective_kind::combine);
  EXPECT_EQ(s->dispatch_word, 0u);
  EXPECT_EQ(s->missing, both);
  // A snapshot of the wrong size (never read) shows nothing rather than a false stall.
  EXPECT_FALSE(running_exchange(snap(word6, 0, 0, {0, 0}), remote_ranks));
}

TEST(ExchangeGuard, FiresOnlyWhenTheSameExchangeRunsPastTheLimit) {
  const auto t0 = std::chrono::steady_clock::time_point{} + 100s;
  stall_timer timer{5s};
  const auto dispatch6 = running_exchange(snap(word6, word5, 0, {0, 0, 0, 0}), remote_ranks);
  EXPECT_FALSE(timer.observe(dispatch6, t0));
  EXPECT_FALSE(timer.observe(dispatch6, t0 + 4s));
  // Rank 2's word came meanwhile: the same exchange, only rank 3 is named when it fires.
  const auto only3 = running_exchange(snap(word6, word5, 0, {word6, 0, 0, 0}), remote_ranks);
  const auto fired = timer.observe(only3, t0 + 5100ms);
  ASSERT_TRUE(fired);
  EXPECT_EQ(fired->missing, std::uint64_t{1} << 3);
  EXPECT_EQ(fired->op, collective_kind::dispatch);

  // Progress between polls restarts the clock: the next dispatch (another word), the combine
  // exchange of the same dispatch, or a poll that sees nothing running.
  const std::uint64_t word7 = progress_word(7, collective_kind::dispatch);
  const auto combine7 = running_exchange(snap(word7, word7, started, {word7, word7, 0, 0}), remote_ranks);
  stall_timer busy{5s};
  EXPECT_FALSE(busy.observe(dispatch6, t0));
  EXPECT_FALSE(busy.observe(running_exchange(snap(word7, word6, 0, {0, 0, 0, 0}), remote_ranks), t0 + 4s));
  EXPECT_FALSE(busy.observe(combine7, t0 + 8s));
  EXPECT_FALSE(busy.observe(std::nullopt, t0 + 12s));
  EXPECT_FALSE(busy.observe(combine7, t0 + 16s));
  EXPECT_FALSE(busy.observe(combine7, t0 + 20s));
  EXPECT_TRUE(busy.observe(combine7, t0 + 21100ms));
}

// Two combines after one dispatch (a legal sequence): the first one's exchange waits almost the
// limit for a slow peer, the second starts before the next poll. The count of combines run
// (bumped by the combine kernel) tells them apart, so the second one's clock starts afresh.
TEST(ExchangeGuard, TwoCombinesOfOneDispatchAreTwoExchanges) {
  const auto t0 = std::chrono::steady_clock::time_point{} + 100s;
  stall_timer timer{3s};
  const auto first = running_exchange(snap(word6, word6, started, {word6, word6, 0, 0}, 5), remote_ranks);
  EXPECT_FALSE(timer.observe(first, t0));
  EXPECT_FALSE(timer.observe(first, t0 + 2900ms));
  const auto second = running_exchange(snap(word6, word6, started, {word6, word6, 0, 0}, 6), remote_ranks);
  ASSERT_TRUE(second);
  EXPECT_EQ(second->combines, 6u);
  EXPECT_FALSE(timer.observe(second, t0 + 2910ms));
  EXPECT_FALSE(timer.observe(second, t0 + 5800ms));
  const auto fired = timer.observe(second, t0 + 6000ms);  // the second one's own limit
  ASSERT_TRUE(fired);
  EXPECT_EQ(fired->combines, 6u);
}

// A dispatch whose kernel did not launch writes no new word; its exchange still runs (the other
// domains wait for it) and sets dispatch_done to dispatch_not_launched first, so it is watched:
// also as the first dispatch, and apart from the launched exchange of the same word before it.
TEST(ExchangeGuard, TheExchangeOfADispatchThatDidNotLaunchIsWatched) {
  auto s = running_exchange(snap(word5, dispatch_not_launched, 0, {0, word5, 0, 0}), remote_ranks);
  ASSERT_TRUE(s);
  EXPECT_EQ(s->op, collective_kind::dispatch);
  EXPECT_TRUE(s->unlaunched);
  EXPECT_EQ(s->dispatch_word, word5);
  EXPECT_EQ(s->missing, std::uint64_t{1} << 2);
  s = running_exchange(snap(0, dispatch_not_launched, 0, {0, 0, 0, 0}), remote_ranks);
  ASSERT_TRUE(s);
  EXPECT_EQ(s->op, collective_kind::dispatch);
  EXPECT_TRUE(s->unlaunched);
  EXPECT_EQ(s->missing, both);
  // A launched dispatch's exchange is not marked so.
  s = running_exchange(snap(word6, word5, 0, {0, 0, 0, 0}), remote_ranks);
  ASSERT_TRUE(s);
  EXPECT_FALSE(s->unlaunched);
  // The copy after the exchange restores dispatch_done: idle again.
  EXPECT_FALSE(running_exchange(snap(word5, word5, 0, {word5, word5, 0, 0}), remote_ranks));

  // Dispatch 5's exchange ran almost the limit; the next dispatch did not launch and its
  // exchange (same word) started before the next poll: a new exchange, its own clock.
  const auto t0 = std::chrono::steady_clock::time_point{} + 100s;
  stall_timer timer{3s};
  const auto launched = running_exchange(snap(word5, 0, 0, {0, 0, 0, 0}), remote_ranks);
  const auto not_launched = running_exchange(snap(word5, dispatch_not_launched, 0, {0, 0, 0, 0}), remote_ranks);
  EXPECT_FALSE(timer.observe(launched, t0));
  EXPECT_FALSE(timer.observe(launched, t0 + 2900ms));
  EXPECT_FALSE(timer.observe(not_launched, t0 + 2910ms));
  EXPECT_FALSE(timer.observe(not_launched, t0 + 5800ms));
  const auto fired = timer.observe(not_launched, t0 + 6000ms);
  ASSERT_TRUE(fired);
  EXPECT_TRUE(fired->unlaunched);
}

// The deadline thread of the setup exchange and the first agreement (revoke_at_deadline.hpp),
// without a GPU: the clock only (a null communicator; what NCCL answers to revoking it is not
// the point).
TEST(RevokeAtDeadline, FiresOnlyWhenTheTimePassesAndNeverAfterFinish) {
  {
    revoke_at_deadline quick(nullptr, 5.0);
    const auto start = std::chrono::steady_clock::now();
    EXPECT_FALSE(quick.finish());  // finished in time: no revocation, and finish does not wait 5 s
    EXPECT_LT(std::chrono::steady_clock::now() - start, 1s);
    EXPECT_FALSE(quick.fired());
  }
  revoke_at_deadline slow(nullptr, 0.05);
  std::this_thread::sleep_for(300ms);
  EXPECT_TRUE(slow.fired());
  EXPECT_TRUE(slow.finish());
  revoke_at_deadline off(nullptr, 0);  // 0: no deadline, no thread
  std::this_thread::sleep_for(50ms);
  EXPECT_FALSE(off.finish());
}
