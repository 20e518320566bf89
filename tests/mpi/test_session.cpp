#include <gtest/gtest.h>

#include <nccl_device/impl/comm__types.h>

#include <chrono>
#include <string>
#include <thread>

#include "epgraph/comm/ep_session.hpp"
#include "epgraph/comm/error.hpp"
#include "epgraph/comm/nccl_comm.hpp"
#include "world.hpp"

using namespace epgraph;
using epgraph::mpitest::mpi;
using epgraph::mpitest::world_comm;

namespace {
comm::ep_config small_config() {
  comm::ep_config c;
  c.ep_size = mpi().size();
  c.max_tokens_per_rank = 64;
  c.top_k = 4;
  c.num_experts = 8 * mpi().size();
  c.hidden = 1024;
  c.payloads = {{"hidden", 2048}};
  c.num_ctas = 16;
  c.threads_per_cta = 256;
  return c;
}
}  // namespace

TEST(Session, CreateAndTeardownRepeatedly) {
  for (int round = 0; round < 3; ++round) {
    comm::ep_session s(world_comm(), small_config());
    EXPECT_EQ(s.rank(), mpi().rank());
    EXPECT_EQ(s.dev_comm().lsaSize, mpi().size());
    EXPECT_EQ(s.dev_comm().lsaRank, mpi().rank());
    EXPECT_EQ(s.read_faults().first().code, comm::fault_code::none);
    EXPECT_EQ(s.layout().window_bytes, comm::plan_workspace(small_config()).window_bytes);
  }
}

TEST(Session, MismatchedConfigFailsOnEveryRankNamingTheField) {
  auto c = small_config();
  c.hidden = mpi().rank() == 0 ? 1024 : 2048;
  bool threw = false;
  try {
    comm::ep_session s(world_comm(), c);
  } catch (const comm::error& e) {
    threw = true;
    const std::string text = e.what();
    EXPECT_NE(text.find("field 'hidden' differs between ranks: rank 0=1024 rank 1=2048"), std::string::npos) << text;
  }
  EXPECT_TRUE(threw);
  EXPECT_TRUE(mpitest::all_ok(threw));
  comm::ep_session after(world_comm(), small_config());  // the communicator is still usable
  EXPECT_EQ(after.rank(), mpi().rank());
}

TEST(Session, EpSizeMustEqualTheCommunicatorSize) {
  auto c = small_config();
  c.ep_size = 2 * mpi().size();
  c.num_experts = 8 * c.ep_size;
  try {
    comm::ep_session s(world_comm(), c);
    ADD_FAILURE() << "accepted";
  } catch (const comm::error& e) {
    EXPECT_NE(std::string(e.what()).find("but the communicator has " + std::to_string(mpi().size()) + " ranks"),
              std::string::npos)
        << e.what();
  }
}

TEST(Session, BorrowedCommunicatorOutlivesTheSession) {
  comm::nccl_comm_ref borrowed(world_comm().get());
  { comm::ep_session s(borrowed, small_config()); }
  comm::ep_session again(borrowed, small_config());  // still alive: not destroyed by the first
  EXPECT_EQ(again.comm().size(), mpi().size());
}

TEST(Session, VersionCheckPassesWithTheMatchingLibrary) {
  EXPECT_NO_THROW(comm::check_nccl_version());
  EXPECT_EQ(comm::loaded_nccl_version(), NCCL_VERSION_CODE);
}

// A peer that never creates its session (issue 13: "a peer that never joins"): the others'
// creation ends at the first agreement's wait (twice the deadline plus a second) with a message
// that names the step. That agreement comes before anything else, with one domain or several
// (here: domains of 1 rank). It is the first collective on a communicator of the test's own, so
// NCCL waits inside it, on the host, to connect the absent rank: before the agreement revoked
// the communicator at the deadline, this hung for ever (seen on 2x H200). The communicator is
// spent then and aborted, as the message says.
TEST(Session, APeerThatNeverCreatesItsSessionFailsTheOthersByTheDeadline) {
  if (mpi().size() < 2) GTEST_SKIP() << "needs 2 ranks";
  ncclComm_t raw = nullptr;
  ASSERT_EQ(ncclCommSplit(world_comm().get(), 0, mpi().rank(), &raw, nullptr), ncclSuccess);
  comm::nccl_comm own = comm::nccl_comm::from_native_handle(raw);
  if (mpi().rank() != mpi().size() - 1) {  // the last rank never creates its session
    comm::ep_config c = small_config();
    c.domain_size = 1;
    c.deadline_seconds = 1;  // the agreement waits 2 x 1 + 1 = 3 s
    const auto start = std::chrono::steady_clock::now();
    std::string text;
    try {
      comm::ep_session s(own, c);
    } catch (const comm::error& e) {
      text = e.what();
    }
    const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    EXPECT_NE(text.find("not every rank reached 'session setup"), std::string::npos) << text;
    EXPECT_NE(text.find("nccl_comm::abort"), std::string::npos) << text;  // the communicator is spent
    EXPECT_LT(waited, 20.0) << text;
  } else {
    std::this_thread::sleep_for(std::chrono::seconds(10));  // alive, but not in the session
  }
  own.abort();
  mpi().barrier();
}
