// The fault records and the collective-step protocol the kernels run (progress.hpp): pure
// functions shared by host and device, so their every case is checked here.
#include <gtest/gtest.h>

#include "epgraph/comm/faults.hpp"
#include "epgraph/comm/progress.hpp"

#include <vector>

using namespace epgraph::comm;

TEST(Faults, InputFaultsDescribeTokenEntryAndValue) {
  fault_record f;
  f.code = fault_code::expert_id_out_of_range;
  f.token = 3;
  f.entry = 1;
  f.value = 300;
  EXPECT_EQ(describe(f), "expert id out of range (entry skipped): token 3, top-k entry 1, value 300");
  fault_record g;
  g.code = fault_code::token_count_above_max;
  g.value = 5000;
  EXPECT_EQ(describe(g), "token count above max_tokens_per_rank (clamped), value 5000");
  EXPECT_FALSE(is_fatal(f.code));
  EXPECT_FALSE(is_fatal(fault_code::token_count_negative));
}

TEST(Faults, ExpertMajorFaultsNameTheRowOrTheSlotAndTheCount) {
  fault_record repeat;
  repeat.code = fault_code::expert_repeated;
  repeat.token = 7;
  repeat.entry = 2;
  repeat.value = 41;
  repeat.peer = 1;
  EXPECT_EQ(describe(repeat),
            "a token names one expert twice (the repeat gives no expert-major row): the token in receive slot 7 "
            "from rank 1, top-k entry 2, expert 41");
  fault_record over;
  over.code = fault_code::expert_rows_over_capacity;
  over.entry = 5;
  over.value = 12;
  EXPECT_EQ(describe(over),
            "expert-major rows over the masked capacity (dropped; raise expert_major_spec.capacity): local expert "
            "slot 5 lost 12 rows");
  EXPECT_FALSE(is_fatal(repeat.code));
  EXPECT_FALSE(is_fatal(over.code));
}

TEST(Faults, OutOfStepNamesBothCollectivesAndThePeer) {
  fault_record f;
  f.code = fault_code::collective_out_of_step;
  f.op = collective_kind::combine;
  f.seq = 12;
  f.peer = 2;
  f.peer_word = progress_word(12, collective_kind::dispatch);
  EXPECT_TRUE(is_fatal(f.code));
  EXPECT_EQ(describe(f),
            "collective out of step: this rank's collective #12 (combine) met rank 2's collective #12 (dispatch) "
            "(the ranks did not launch the same sequence of dispatch and combine)");
}

TEST(Faults, TimeoutNamesEveryMissingPeer) {
  fault_record f;
  f.code = fault_code::peer_timeout;
  f.op = collective_kind::dispatch;
  f.seq = 5;
  f.missing = (1ull << 1) | (1ull << 3) | (1ull << 63);
  EXPECT_EQ(describe(f),
            "peers did not arrive within the deadline: rank 1, 3, 63 did not reach collective #5 (dispatch) "
            "(stalled, dead, or launching fewer collectives)");
}

TEST(Faults, StoppedPeerSaysWhetherItLeftOrFaulted) {
  fault_record f;
  f.code = fault_code::peer_stopped;
  f.op = collective_kind::combine;
  f.seq = 8;
  f.peer = 1;
  f.peer_word = progress_word(0, collective_kind::stopped);
  EXPECT_NE(describe(f).find("rank 1 left the session"), std::string::npos) << describe(f);
  f.peer_word = progress_word(7, collective_kind::stopped);
  EXPECT_NE(describe(f).find("rank 1 had a fatal fault at its collective #7; seen at this rank's collective #8 (combine)"),
            std::string::npos)
      << describe(f);
}

TEST(Faults, EveryFatalCodeHasItsOwnText) {
  for (auto code : {fault_code::lookback_timeout, fault_code::overlapping_launch, fault_code::local_stage_failed,
                    fault_code::session_left, fault_code::exchange_timeout}) {
    fault_record f;
    f.code = code;
    f.seq = 3;
    f.op = collective_kind::dispatch;
    EXPECT_TRUE(is_fatal(code));
    EXPECT_EQ(describe(f).rfind(std::string(to_string(code)), 0), 0u) << describe(f);
  }
  device_faults both;
  both.input.code = fault_code::token_count_negative;
  EXPECT_EQ(both.first().code, fault_code::token_count_negative);
  both.fatal.code = fault_code::peer_timeout;
  EXPECT_EQ(both.first().code, fault_code::peer_timeout);  // the fatal one matters more
}

TEST(Progress, WordKeepsNumberAndKind) {
  const std::uint64_t w = progress_word(123456789, collective_kind::combine);
  EXPECT_EQ(progress_seq(w), 123456789u);
  EXPECT_EQ(progress_kind(w), collective_kind::combine);
  EXPECT_EQ(progress_kind(0), collective_kind::none);  // a zeroed window: nothing launched yet
}

TEST(Progress, APeerIsInStepAtTheSameCollectiveOrPastIt) {
  const auto d = collective_kind::dispatch, c = collective_kind::combine;
  // Not yet there: earlier number, or the zeroed slot.
  EXPECT_EQ(classify_peer(7, d, progress_word(6, c)), peer_state::waiting);
  EXPECT_EQ(classify_peer(1, d, 0), peer_state::waiting);
  // Same collective, same op.
  EXPECT_EQ(classify_peer(7, d, progress_word(7, d)), peer_state::arrived);
  // Past it: it passed collective 7, which took this rank's arrival and the same op.
  EXPECT_EQ(classify_peer(7, d, progress_word(8, c)), peer_state::arrived);
  // Same number, other op: one rank launched one collective more or fewer before this one.
  EXPECT_EQ(classify_peer(7, d, progress_word(7, c)), peer_state::out_of_step);
  EXPECT_EQ(classify_peer(7, c, progress_word(7, d)), peer_state::out_of_step);
  // Stopped wins whatever its number.
  EXPECT_EQ(classify_peer(7, d, progress_word(0, collective_kind::stopped)), peer_state::stopped);
  EXPECT_EQ(classify_peer(7, d, progress_word(9, collective_kind::stopped)), peer_state::stopped);
}

TEST(Progress, TheIssuesReproIsCaughtAtTheFirstDisplacedCollective) {
  // Rank A runs one extra dispatch in step 2 (D C | D D C ...), rank B does not (D C | D C ...):
  // the numbers stay aligned, so only the op of each number tells them apart.
  const collective_kind D = collective_kind::dispatch, C = collective_kind::combine;
  const std::vector<collective_kind> a = {D, C, D, D, C, D, C}, b = {D, C, D, C, D, C, D};
  std::size_t caught = 0;
  for (std::size_t n = 1; n <= a.size() && !caught; ++n)
    if (classify_peer(n, a[n - 1], progress_word(n, b[n - 1])) == peer_state::out_of_step) caught = n;
  EXPECT_EQ(caught, 4u);  // before the displaced combine could read a partial sum
}

// The launch word of one CTA index, driven the way begin_collective (one atomic add, and an
// atomic or of the overlapped bit when it finds CTA b running) and end_collective (subtract 1,
// every launch) drive it.
namespace {
struct launch_word_model {
  std::uint64_t word = 0;
  launch_claim begin() {
    const std::uint64_t before = word;
    word += launch_claim_increment;
    const launch_claim c = claim_launch(before);
    if (c.overlapping) word |= launch_overlapped_bit;
    return c;
  }
  void end() { word -= 1; }
  std::uint64_t running() const { return word & launch_running_mask; }
};
}  // namespace

TEST(Progress, LaunchesInStreamOrderAreNumberedOneByOne) {
  launch_word_model m;
  for (std::uint64_t n = 1; n <= 5; ++n) {
    const launch_claim c = m.begin();
    EXPECT_EQ(c.seq, n);
    EXPECT_FALSE(c.refused);
    m.end();
  }
  EXPECT_EQ(m.running(), 0u);
}

TEST(Progress, AnOverlapRefusesEveryLaterLaunchAsWell) {
  launch_word_model m;
  const launch_claim first = m.begin();
  const launch_claim second = m.begin();  // starts while the first runs
  const launch_claim third = m.begin();   // a third beside both (the +3 encoding let this one run)
  EXPECT_FALSE(first.refused);
  EXPECT_TRUE(second.overlapping && second.refused);
  EXPECT_TRUE(third.overlapping && third.refused);
  EXPECT_EQ(second.seq, 2u);
  EXPECT_EQ(third.seq, 3u);
  m.end();
  m.end();
  m.end();
  EXPECT_EQ(m.running(), 0u);
  // Everyone ended; the overlapped bit keeps refusing, in stream order too.
  const launch_claim later = m.begin();
  EXPECT_FALSE(later.overlapping);
  EXPECT_TRUE(later.refused);
  EXPECT_EQ(later.seq, 4u);
}

TEST(Progress, RefusedLaunchesNeverCarryIntoTheCount) {
  // A runtime that keeps replaying after an overlap, without checking faults: far more
  // refused launches than the running bits could count, and the numbering stays exact.
  launch_word_model m;
  (void)m.begin();
  (void)m.begin();
  m.end();
  m.end();
  for (std::uint64_t n = 3; n <= 200000; ++n) {
    const launch_claim c = m.begin();
    ASSERT_EQ(c.seq, n);
    ASSERT_TRUE(c.refused);
    m.end();
  }
  EXPECT_EQ(m.running(), 0u);
}

TEST(Progress, LaunchNumbersUseTheWholeCounter) {
  // Far beyond 2^32 launches (the look-back tag's width) the number keeps counting.
  const std::uint64_t launches = (std::uint64_t{1} << 40) + 7;
  const launch_claim c = claim_launch(launches << launch_running_bits);
  EXPECT_EQ(c.seq, launches + 1);
  EXPECT_FALSE(c.refused);
  EXPECT_EQ(progress_seq(progress_word(c.seq, collective_kind::dispatch)), launches + 1);
}

TEST(Faults, AnExchangeTimeoutNamesTheRanksTheExchangeAndTheWait) {
  fault_record f;
  f.code = fault_code::exchange_timeout;
  f.op = collective_kind::dispatch;
  f.seq = 5;
  f.peer = 2;
  f.missing = (std::uint64_t{1} << 2) | (std::uint64_t{1} << 3);
  f.value = 61;
  EXPECT_NE(describe(f).find("still waiting for rank 2, 3 in the exchange of dispatch #5 (61 s;"), std::string::npos)
      << describe(f);
  f.op = collective_kind::combine;
  f.missing = std::uint64_t{1} << 3;
  EXPECT_NE(describe(f).find("still waiting for rank 3 in the combine exchange after dispatch #5 (61 s;"),
            std::string::npos)
      << describe(f);
  EXPECT_NE(describe(f).find("revoked"), std::string::npos) << describe(f);
  f.seq = 0;  // a combine before the session's first dispatch
  EXPECT_NE(describe(f).find("still waiting for rank 3 in the combine exchange before any dispatch (61 s;"),
            std::string::npos)
      << describe(f);
  // The exchange of a dispatch whose kernel did not launch on this rank (entry 1): named by
  // the dispatch it follows, since it has no number of its own.
  f.op = collective_kind::dispatch;
  f.entry = 1;
  EXPECT_NE(describe(f).find("in the exchange of the first dispatch, whose kernel did not launch here (61 s;"),
            std::string::npos)
      << describe(f);
  f.seq = 7;
  EXPECT_NE(describe(f).find("in the exchange of the dispatch after #7, whose kernel did not launch here (61 s;"),
            std::string::npos)
      << describe(f);
}
