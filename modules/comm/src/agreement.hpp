#pragma once
// Rank agreement: every host-side collective decision of a session, each with a deadline.
//
// Until attach(), it runs NCCL all-gathers on a stream of its own and polls them (session
// setup, before the window exists; with several domains for the session's whole life, since
// the window spans one domain only). A peer that never arrives leaves that NCCL collective
// unfinished. On the caller's communicator the agreement then reports stuck(), and its owner
// must not free GPU memory (cudaFree would wait for the collective forever) but leak it and
// tell the user to abort the communicator. On a communicator of the session's own
// (use_own_communicator) it revokes that communicator instead, which ends the collective:
// nothing is left behind. The first all-gather on a communicator also connects NCCL's peers,
// a wait on the host inside NCCL's call: a peer that never comes is cut off at the deadline by
// revoking the communicator from another thread (revoke_at_deadline.hpp), on the caller's
// communicator too (a peer that never created its session; the user must abort it anyway).
// After attach(), it runs through the window's mailbox (mailbox.hpp), where nothing waits on
// the device.
//
// Every operation is collective: all ranks call the same ones in the same order; both phases
// compare the names and throw on every rank that sees another. One thread at a time.
//
// Deadline: an agreement waits up to twice the session's deadline plus a second, because a
// healthy peer may first spend a whole deadline inside a kernel (waiting for the rank that is
// late) before it can reach the host call. Any failure of the agreement itself (deadline, a
// rank that left, names that differ) sets the `failed` flag it was given, breaks the agreement
// (every later exchange refuses: the ranks' rounds may differ) and tells the peers that this
// rank left, so they fail at once instead of at their deadline.
#include <nccl.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <span>
#include <string_view>
#include <vector>

#include "epgraph/comm/cuda_handles.hpp"
#include "epgraph/comm/device_buffer.hpp"
#include "epgraph/comm/unique_handle.hpp"
#include "mailbox.hpp"

namespace epgraph::comm::detail {

class rank_agreement {
 public:
  rank_agreement(ncclComm_t comm, int rank, int ranks, double deadline_seconds, std::atomic<bool>& failed);
  ~rank_agreement();
  rank_agreement(const rank_agreement&) = delete;
  rank_agreement& operator=(const rank_agreement&) = delete;

  /// From now on, through the mailbox. Every rank's window must be zeroed and every rank
  /// past its zeroing (the last NCCL agreement of setup ensures both).
  void attach(const mailbox_view& m) noexcept { mailbox_ = m; }
  /// From now on the NCCL all-gathers run on `comm`, a communicator the session owns (split
  /// off the caller's, same ranks). Between agreements only.
  void use_own_communicator(ncclComm_t comm) noexcept {
    comm_ = comm;
    own_comm_ = true;
    connected_ = false;
  }
  bool attached() const noexcept { return mailbox_.window != nullptr; }

  /// Every rank's values: result[r] holds what rank r passed (every rank passes as many, at
  /// most mailbox_values). With `left_is_arrived`, a rank that left the session counts as
  /// arrived (its values are empty): teardown must not wait for it.
  std::vector<std::vector<std::int64_t>> exchange(std::string_view what, std::span<const std::int64_t> mine,
                                                  bool left_is_arrived = false);
  /// The ranks that passed ok == false (empty: every rank passed true).
  std::vector<int> failing_ranks(std::string_view what, bool ok);
  /// Runs `step`; every rank learns whether all passed and throws together (the failing rank
  /// its own error, the others an error naming the failing ranks).
  void agreed(std::string_view what, const std::function<void()>& step);
  /// Tells every peer that this rank left (see post_leave). Local, never throws.
  void leave(fault_code reason) noexcept;

  /// How long one agreement waits for the peers (0 = forever).
  double wait_seconds() const noexcept { return deadline_seconds_ > 0 ? 2 * deadline_seconds_ + 1 + extra_wait_ : 0; }
  /// Several domains: a peer may first wait out the exchange guard's limit (exchange_guard.hpp).
  void extend_wait(double seconds) noexcept { extra_wait_ = seconds; }
  bool stuck() const noexcept { return stuck_; }
  /// An exchange failed or this rank left: the ranks' rounds may differ, so no further
  /// agreement can be trusted.
  bool broken() const noexcept { return broken_; }
  double deadline_seconds() const noexcept { return deadline_seconds_; }

 private:
  std::vector<std::vector<std::int64_t>> exchange_nccl(std::string_view what, std::span<const std::int64_t> mine);
  std::vector<std::vector<std::int64_t>> exchange_mailbox(std::string_view what, std::span<const std::int64_t> mine,
                                                          bool left_is_arrived);
  void read_mailbox(std::vector<mailbox_slot>& out);
  [[noreturn]] void fail(std::string_view what, std::string message, std::string hint);
  /// Revokes the own communicator and waits (bounded) for the unfinished all-gather to end.
  bool revoke_unfinished() noexcept;
  /// After a revocation: waits (bounded) for the agreement's stream; true when it ended.
  bool unfinished_ends() noexcept;
  bool past_deadline(std::chrono::steady_clock::time_point start) const;

  ncclComm_t comm_;
  int rank_, ranks_;
  double deadline_seconds_;
  double extra_wait_ = 0;
  std::atomic<bool>& failed_;
  unique_handle<stream_traits> stream_;
  device_buffer scratch_;  // NCCL phase: [ranks + 1][mailbox_values] int64
  mailbox_view mailbox_{};
  std::uint64_t round_ = 0;
  bool own_comm_ = false, stuck_ = false, left_ = false, broken_ = false;
  /// The communicator has run a collective: NCCL connected its peers (the first one is bounded
  /// by revoking the communicator; see exchange_nccl).
  bool connected_ = false;
};

}  // namespace epgraph::comm::detail
