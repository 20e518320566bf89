// The host agreement's mailbox rule (modules/comm/src/mailbox.hpp): what a peer's slot means to
// a rank waiting for its round. Private to the comm module, tested white-box.
#include <gtest/gtest.h>

#include "mailbox.hpp"

using namespace epgraph::comm::detail;

TEST(Mailbox, APostedRoundCountsEvenIfThePeerLeftAfterwards) {
  EXPECT_EQ(classify_mail(7, 7, false), mail_state::arrived);
  // The peer posted round 7, finished, and its teardown left the session before this rank's
  // second read: its round (and body) are still there, so it counts.
  EXPECT_EQ(classify_mail(7, 7, true), mail_state::arrived);
}

TEST(Mailbox, AnOlderRoundIsMissingOrLeft) {
  EXPECT_EQ(classify_mail(7, 5, false), mail_state::missing);  // same parity, two rounds back
  EXPECT_EQ(classify_mail(1, 0, false), mail_state::missing);  // zeroed window: nothing posted yet
  EXPECT_EQ(classify_mail(7, 5, true), mail_state::left);
}

TEST(Mailbox, ARoundAheadIsAProtocolError) {
  // A peer can post round r+2 into this parity only after it saw this rank's r+1: never while
  // this rank waits for r.
  EXPECT_EQ(classify_mail(7, 9, false), mail_state::ahead);
}

TEST(Mailbox, SlotsFitTheLayout) {
  static_assert(sizeof(mailbox_slot) == epgraph::comm::mailbox_slot_bytes);
  EXPECT_LT(mailbox_left_row, 3u);
  EXPECT_EQ(left_round, ~std::uint64_t{0});
}
