#pragma once
// The exchange guard: a deadline for the NCCL exchanges between NVLink domains, which have none.
//
// NCCL point-to-point waits forever for a peer that never posts its half (a rank of another
// domain that stopped launching, died, or launches another sequence of ops). A session with
// several domains therefore runs one host thread that watches its own exchanges through words
// of its remote state (workspace_layout.hpp), each dispatch zeroing them first:
//   dispatch exchange running: the dispatch word is set and a remote_words[0] entry is still 0
//     (NCCL's receive of that remote rank's word fills it);
//   combine exchange running: exchange_mark is set (the exchange's first, peer-free copy) and
//     a remote_words[1] entry is still 0.
// Seen running for the same dispatch word longer than the limit (the agreements' wait: twice
// the deadline plus a second, as a healthy peer may first spend a deadline inside a kernel),
// the guard records an exchange_timeout fault naming the remote ranks that sent nothing,
// marks the session failed (launches are refused) and aborts the communicator between domains:
// NCCL's kernels end, the rest of the stream runs, and the combine kernel faults on the words
// that never came (its rows are NaN). request_abort() aborts it at once (ep_session::abort).
//
// ncclCommAbort waits until every CUDA graph that captured operations of the communicator is
// destroyed (NCCL >= 2.26): it runs on the guard thread, and stop() waits for it.
#include <cuda_runtime_api.h>
#include <nccl.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <optional>
#include <span>
#include <thread>
#include <vector>

#include "epgraph/comm/faults.hpp"

namespace epgraph::comm::detail {

/// What the guard reads in one poll. words: [2][remote] (dispatch, combine), as in the layout.
struct exchange_snapshot {
  std::uint64_t dispatch_word = 0;
  std::uint64_t mark = 0;
  std::vector<std::uint64_t> words;
};

/// An exchange that has not completed: its op, this rank's collective number, and the remote
/// ranks (EP ranks, bit p = rank p) that sent nothing yet.
struct exchange_stall {
  collective_kind op = collective_kind::none;
  std::uint64_t dispatch_word = 0;
  std::uint64_t missing = 0;
};

/// Pure: the exchange running in `s`, or nullopt when none is (idle, or in the expert stage).
/// remote_ranks[i] is the EP rank of remote index i.
std::optional<exchange_stall> running_exchange(const exchange_snapshot& s, std::span<const int> remote_ranks);

/// Follows one stall across polls: returns it once the same exchange (dispatch word and op)
/// has been seen running for longer than `limit`. Host only, no clock of its own (testable).
class stall_timer {
 public:
  explicit stall_timer(std::chrono::duration<double> limit) : limit_(limit) {}
  std::optional<exchange_stall> observe(const std::optional<exchange_stall>& running,
                                        std::chrono::steady_clock::time_point now);

 private:
  std::chrono::duration<double> limit_;
  std::optional<exchange_stall> current_;
  std::chrono::steady_clock::time_point since_{};
};

class exchange_guard {
 public:
  struct watched {
    const std::uint64_t* dispatch_word = nullptr;  ///< device memory (local state)
    const std::uint64_t* remote_words = nullptr;   ///< device memory, [2][remote]
    const std::uint64_t* mark = nullptr;           ///< device memory
    device_faults* faults = nullptr;               ///< device memory: where the timeout is recorded
    std::vector<int> remote_ranks;                 ///< EP rank of each remote index
  };
  /// Starts the thread (on `device`). `comm` and `failed` must outlive the guard.
  exchange_guard(watched what, ncclComm_t comm, int device, int rank, double limit_seconds, std::atomic<bool>& failed);
  ~exchange_guard() { stop(); }
  exchange_guard(const exchange_guard&) = delete;
  exchange_guard& operator=(const exchange_guard&) = delete;

  /// Asks the thread to abort the communicator now. Local, never throws, never waits.
  void request_abort() noexcept;
  /// Ends the thread (waits for an abort in progress). Never throws; idempotent.
  void stop() noexcept;
  /// The communicator was aborted (the owner must not destroy it again). Read after stop().
  bool aborted() const noexcept { return aborted_; }

 private:
  void run() noexcept;
  bool poll(exchange_snapshot& s) noexcept;
  void fire(const exchange_stall& stall) noexcept;
  void abort_comm() noexcept;

  watched what_;
  ncclComm_t comm_;
  int device_, rank_;
  double limit_seconds_;
  std::atomic<bool>& failed_;
  cudaStream_t stream_ = nullptr;
  std::uint64_t* host_ = nullptr;  // pinned: dispatch word, mark, words
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stopping_ = false, abort_requested_ = false;
  std::atomic<bool> aborted_{false};
  std::thread thread_;
};

}  // namespace epgraph::comm::detail
