#include "agreement.hpp"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <functional>
#include <sstream>
#include <string>
#include <thread>

#include "backoff.hpp"
#include "revoke_at_deadline.hpp"
#include "epgraph/comm/error.hpp"

namespace epgraph::comm::detail {
namespace {

std::string rank_list(const std::vector<int>& ranks) {
  std::ostringstream out;
  out << (ranks.size() == 1 ? "rank " : "ranks ");
  for (std::size_t i = 0; i < ranks.size(); ++i) out << (i ? ", " : "") << ranks[i];
  return out.str();
}

}  // namespace

rank_agreement::rank_agreement(ncclComm_t comm, int rank, int ranks, double deadline_seconds,
                               std::atomic<bool>& failed)
    : comm_(comm),
      rank_(rank),
      ranks_(ranks),
      deadline_seconds_(deadline_seconds),
      failed_(failed),
      scratch_(static_cast<std::size_t>(ranks + 1) * mailbox_values * sizeof(std::int64_t)) {
  cudaStream_t s = nullptr;
  EPG_CHECK_CUDA(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  stream_ = unique_handle<stream_traits>(s);
}

rank_agreement::~rank_agreement() {
  if (!stuck_) return;
  // The NCCL collective still runs on stream_ and reads scratch_: freeing either would wait
  // for it forever. The user was told to abort the communicator.
  (void)scratch_.release();
  (void)stream_.release();
}

bool rank_agreement::past_deadline(std::chrono::steady_clock::time_point start) const {
  return wait_seconds() > 0 &&
         std::chrono::steady_clock::now() - start > std::chrono::duration<double>(wait_seconds());
}

void rank_agreement::fail(std::string_view what, std::string message, std::string hint) {
  failed_ = true;
  broken_ = true;
  throw error(error_domain::peer, std::string(what) + " (rank " + std::to_string(rank_) + ")", 0, std::move(message),
              std::move(hint));
}

std::vector<std::vector<std::int64_t>> rank_agreement::exchange(std::string_view what,
                                                                std::span<const std::int64_t> mine,
                                                                bool left_is_arrived) {
  // One value is the name's hash in the NCCL phase.
  if (mine.size() >= static_cast<std::size_t>(mailbox_values))
    throw error(error_domain::internal, std::string(what), 0, "too many values for one agreement round", {});
  if (broken_)
    throw error(error_domain::peer, std::string(what) + " (rank " + std::to_string(rank_) + ")", 0,
                left_ ? "this rank already left the session" : "an earlier host agreement of this session failed",
                "the ranks are no longer known to be in step: destroy the session (its teardown is local) and create "
                "a new one");
  try {
    return attached() ? exchange_mailbox(what, mine, left_is_arrived) : exchange_nccl(what, mine);
  } catch (...) {
    broken_ = true;
    failed_ = true;
    if (attached()) leave(fault_code::session_left);  // the peers fail at once, not at their deadline
    throw;
  }
}

std::vector<std::vector<std::int64_t>> rank_agreement::exchange_nccl(std::string_view what,
                                                                     std::span<const std::int64_t> mine) {
  auto* mine_d = scratch_.as<std::int64_t>();
  auto* all_d = mine_d + mailbox_values;
  std::vector<std::int64_t> padded(mailbox_values, 0);
  std::copy(mine.begin(), mine.end(), padded.begin());
  padded.back() = static_cast<std::int64_t>(std::hash<std::string_view>{}(what));
  cudaStream_t s = stream_.get();
  EPG_CHECK_CUDA(cudaMemcpyAsync(mine_d, padded.data(), padded.size() * sizeof(std::int64_t),
                                 cudaMemcpyHostToDevice, s));
  // The rows of an earlier round must not pass for this one's: an all-gather that a peer's
  // revocation ended early leaves that peer's row unwritten, and its name hash is then 0.
  EPG_CHECK_CUDA(cudaMemsetAsync(all_d, 0, static_cast<std::size_t>(ranks_) * mailbox_values * sizeof(std::int64_t), s));
  const auto start = std::chrono::steady_clock::now();
  if (connected_) {
    EPG_CHECK_NCCL(ncclAllGather(mine_d, all_d, mailbox_values, ncclInt64, comm_, s));
  } else {
    // The first collective on a communicator connects its peers, on the host, waiting for each
    // (revoke_at_deadline.hpp): a peer that never comes is cut off at the deadline.
    revoke_at_deadline connecting(comm_, wait_seconds());
    const ncclResult_t enqueued = ncclAllGather(mine_d, all_d, mailbox_values, ncclInt64, comm_, s);
    if (connecting.finish()) {
      // Revoked at the deadline. If NCCL queued the all-gather meanwhile (it connected just in
      // time), that must end before this rank's buffers may be freed; else they are leaked.
      const bool ended = enqueued != ncclSuccess || unfinished_ends();
      const std::string missed = "not every rank reached '" + std::string(what) + "' (over NCCL) within " +
                                 seconds_text(wait_seconds()) + ": NCCL was still connecting to them";
      if (!connecting.revoked() || !ended) {
        stuck_ = true;
        fail(what, missed,
             "a peer failed before this step (see its message), is stalled, or never created its session. Revoking "
             "the communicator did not end NCCL's work on it: the session's GPU memory is leaked; abort the "
             "communicator (nccl_comm::abort, ncclCommAbort) before exiting");
      }
      fail(what, missed,
           own_comm_ ? "a peer failed before this step (see its message) or is stalled. The session's own agreement "
                       "communicator was revoked (the communicator you passed is untouched): destroy the session on "
                       "every rank"
                     : "a peer failed before this step (see its message), is stalled, or never created its session. "
                       "To end NCCL's wait for it, this rank revoked the communicator you passed (its first "
                       "collective): abort it (nccl_comm::abort, ncclCommAbort) and create a new one");
    }
    EPG_CHECK_NCCL(enqueued);
    connected_ = true;
  }
  for (backoff wait;; wait.pause()) {
    const cudaError_t done = cudaStreamQuery(s);
    if (done == cudaSuccess) break;
    if (done != cudaErrorNotReady) EPG_CHECK_CUDA(done);
    ncclResult_t async = ncclSuccess;
    EPG_CHECK_NCCL(ncclCommGetAsyncError(comm_, &async));
    if (async != ncclSuccess && async != ncclInProgress) EPG_CHECK_NCCL(async);
    if (past_deadline(start)) {
      const std::string missed =
          "not every rank reached '" + std::string(what) + "' (over NCCL) within " + seconds_text(wait_seconds());
      if (own_comm_ && revoke_unfinished())
        fail(what, missed,
             "a peer failed before this step (see its message), is stalled, or ran another sequence of session "
             "calls. The session's own agreement communicator was revoked (the communicator you passed is "
             "untouched): destroy the session on every rank");
      stuck_ = true;
      if (own_comm_)
        fail(what, missed,
             "a peer failed before this step (see its message) or is stalled. The session's own agreement "
             "communicator was revoked but its collective did not end: it and the session's GPU memory are leaked "
             "(the communicator you passed is untouched)");
      fail(what, missed,
           "a peer failed before this step (see its message) or is stalled. This rank's NCCL collective stays "
           "unfinished and the session's GPU memory is leaked: abort the communicator (nccl_comm::abort, "
           "ncclCommAbort) before exiting");
    }
  }
  std::vector<std::int64_t> host(static_cast<std::size_t>(ranks_) * mailbox_values);
  EPG_CHECK_CUDA(cudaMemcpyAsync(host.data(), all_d, host.size() * sizeof(std::int64_t), cudaMemcpyDeviceToHost, s));
  EPG_CHECK_CUDA(cudaStreamSynchronize(s));
  std::vector<std::vector<std::int64_t>> all(static_cast<std::size_t>(ranks_));
  for (int r = 0; r < ranks_; ++r) {
    const auto* first = host.data() + static_cast<std::size_t>(r) * mailbox_values;
    if (first[mailbox_values - 1] != padded.back())
      fail(what,
           "rank " + std::to_string(r) + " is not in '" + std::string(what) +
               "' (it is in another host agreement, or it gave up on this one at its deadline)",
           "every rank must create its sessions, plan ops and step graphs, check faults, barrier and tear down in "
           "the same order, with the same epgraph");
    all[r].assign(first, first + mine.size());
  }
  return all;
}

bool rank_agreement::revoke_unfinished() noexcept {
  // Still failed: the deadline has passed, even if the all-gather completed since the last look.
  const ncclResult_t revoked = ncclCommRevoke(comm_, NCCL_REVOKE_DEFAULT);
  if (revoked != ncclSuccess && revoked != ncclInProgress) return false;
  return unfinished_ends();
}

bool rank_agreement::unfinished_ends() noexcept { return ends_within(stream_.get(), std::chrono::seconds(10)); }

void rank_agreement::read_mailbox(std::vector<mailbox_slot>& out) {
  out.resize(3 * static_cast<std::size_t>(ranks_));  // rows: round parity 0, parity 1, left marks
  EPG_CHECK_CUDA(cudaMemcpyAsync(out.data(), mailbox_.window_local + mailbox_.mailbox_offset,
                                 out.size() * sizeof(mailbox_slot), cudaMemcpyDeviceToHost, stream_.get()));
  EPG_CHECK_CUDA(cudaStreamSynchronize(stream_.get()));
}

std::vector<std::vector<std::int64_t>> rank_agreement::exchange_mailbox(std::string_view what,
                                                                        std::span<const std::int64_t> mine,
                                                                        bool left_is_arrived) {
  mailbox_slot slot;
  slot.round = round_ + 1;
  std::memcpy(slot.what, what.data(), std::min(what.size(), sizeof slot.what - 1));
  std::copy(mine.begin(), mine.end(), slot.values);
  EPG_CHECK_CUDA(post_mail(mailbox_, slot, stream_.get()));
  round_ = slot.round;
  const std::size_t parity = slot.round & 1u;
  auto posted = [&](const std::vector<mailbox_slot>& seen, int r) { return seen[parity * ranks_ + r]; };
  auto left = [&](const std::vector<mailbox_slot>& seen, int r) {
    return seen[mailbox_left_row * ranks_ + r].round == left_round;
  };
  std::vector<mailbox_slot> seen;
  const auto start = std::chrono::steady_clock::now();
  for (backoff wait;; wait.pause()) {
    read_mailbox(seen);
    std::vector<int> missing, gone;
    for (int r = 0; r < ranks_; ++r) {
      switch (classify_mail(slot.round, posted(seen, r).round, left(seen, r))) {
        case mail_state::arrived: break;
        case mail_state::missing: missing.push_back(r); break;
        case mail_state::left: gone.push_back(r); break;
        case mail_state::ahead:
          fail(what, "rank " + std::to_string(r) + " posted agreement round " + std::to_string(posted(seen, r).round) +
                         " while this rank is at " + std::to_string(slot.round),
               "the ranks' host agreements are out of step: destroy the session");
      }
    }
    if (!gone.empty() && !left_is_arrived)
      fail(what, rank_list(gone) + " left the session before '" + std::string(what) + "'",
           "it aborted or is unwinding from an error (see its message); this rank is healthy: destroy the "
           "session on every rank");
    if (missing.empty()) break;
    if (past_deadline(start))
      fail(what, rank_list(missing) + " did not reach '" + std::string(what) + "' within " + seconds_text(wait_seconds()),
           "they stalled, died, or ran another sequence of session calls; the session is unusable: destroy it");
  }
  // Read once more: every round was seen, so its body is complete (fenced before the round) and
  // stays until that rank posts its next round, which needs this rank's next one first.
  read_mailbox(seen);
  std::vector<std::vector<std::int64_t>> all(static_cast<std::size_t>(ranks_));
  for (int r = 0; r < ranks_; ++r) {
    const mailbox_slot& theirs = posted(seen, r);
    if (theirs.round != slot.round) continue;  // left without posting (left_is_arrived): no values
    if (std::strncmp(theirs.what, slot.what, sizeof slot.what) != 0)
      fail(what, "rank " + std::to_string(r) + " is in '" + std::string(theirs.what) + "' while this rank is in '" +
                     std::string(slot.what) + "'",
           "every rank must plan ops and step graphs, check faults, barrier and tear down sessions in the same order");
    all[r].assign(theirs.values, theirs.values + mine.size());
  }
  return all;
}

std::vector<int> rank_agreement::failing_ranks(std::string_view what, bool ok) {
  const std::int64_t mine[1] = {ok ? 1 : 0};
  const auto all = exchange(what, mine);
  std::vector<int> failing;
  for (int r = 0; r < ranks_; ++r)
    if (all[r].empty() || all[r][0] != 1) failing.push_back(r);
  return failing;
}

void rank_agreement::agreed(std::string_view what, const std::function<void()>& step) {
  std::exception_ptr failure;
  try {
    step();
  } catch (...) {
    failure = std::current_exception();
  }
  std::vector<int> failing;
  try {
    failing = failing_ranks(what, !failure);
  } catch (const error& broke) {
    if (!failure) throw;
    // Keep this rank's own error first: it is the cause the user must see.
    try {
      std::rethrow_exception(failure);
    } catch (const error& own) {
      throw error(own.domain(), own.call(), own.code(), own.message() + "; and " + broke.message(), own.hint());
    }
  }
  if (failure) std::rethrow_exception(failure);
  if (!failing.empty())
    throw error(error_domain::peer, std::string(what) + " (rank " + std::to_string(rank_) + ")", 0,
                rank_list(failing) + " failed this step; every rank throws together",
                "see the failing rank's message; this rank is healthy and the ranks are still in step");
}

void rank_agreement::leave(fault_code reason) noexcept {
  failed_ = true;
  broken_ = true;
  if (left_ || !attached() || stuck_) return;
  left_ = true;
  const cudaError_t posted = post_leave(mailbox_, reason, stream_.get());
  const cudaError_t done = posted == cudaSuccess ? cudaStreamSynchronize(stream_.get()) : posted;
  if (done != cudaSuccess)
    std::fprintf(stderr, "epgraph: rank %d could not tell its peers that it left the session: %s\n", rank_,
                 cudaGetErrorString(done));
}

}  // namespace epgraph::comm::detail
