#pragma once
// The exchange guard: a deadline for the NCCL exchanges between NVLink domains, which have none.
//
// NCCL point-to-point waits forever for a peer that never posts its half (a rank of another
// domain that stopped launching, died, or launches another sequence of ops). A session with
// several domains therefore runs one host thread that watches its own exchanges through words
// of its remote state (workspace_layout.hpp), written in stream order around each exchange:
//   dispatch exchange running: dispatch_word (written by the dispatch kernel) differs from
//     dispatch_done (a copy of it, enqueued after the exchange's NCCL group);
//   combine exchange running: combine_mark is set (the group's first, peer-free copy of a
//     constant, to this rank itself; so also before any dispatch) and not yet cleared (by the
//     combine kernel, which runs after the group).
// The remote words still 0 (each dispatch zeroes them; NCCL's receives fill them) name the
// ranks it waits for. Seen running for the same dispatch word longer than the limit (twice
// the deadline plus a second, as a healthy peer may first spend a deadline inside a kernel)
// and still running at a last look, the exchange gets an exchange_timeout fault (unless the
// rank has a fatal fault already), the session is marked failed (launches are refused) and
// the communicator between domains is revoked (ncclCommRevoke, under the session's lock of
// that communicator, which its exchanges hold while they enqueue): NCCL's kernels end, the rest
// of the stream runs, and the combine kernel faults on the words that never came (NaN rows).
// request_abort() revokes it at once (ep_session::abort). The owner aborts (frees) the
// communicator later, on its own thread; the handle stays valid until then.
//
// A deadline of 0 watches nothing (no deadline anywhere), but request_abort() still works.
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
  std::uint64_t dispatch_done = 0;
  std::uint64_t mark = 0;
  std::uint64_t combines = 0;  ///< combine kernels run so far (combines_done)
  std::vector<std::uint64_t> words;
};

/// An exchange that has not completed: its op, the dispatch word it belongs to, and the remote
/// ranks (EP ranks, bit p = rank p) whose word has not come (all of them when every word came:
/// then this rank's own sends are what is unfinished).
struct exchange_stall {
  collective_kind op = collective_kind::none;
  std::uint64_t dispatch_word = 0;
  std::uint64_t combines = 0;  ///< combines run before it: two combines of one dispatch differ here
  bool unlaunched = false;     ///< dispatch: its kernel did not launch (dispatch_word is the previous one)
  std::uint64_t missing = 0;
  /// The same exchange as `o` (for the timer and the last look): op, word, combines, launch.
  bool same_exchange(const exchange_stall& o) const noexcept {
    return op == o.op && dispatch_word == o.dispatch_word && combines == o.combines && unlaunched == o.unlaunched;
  }
};

/// Pure: the exchange running in `s`, or nullopt when none is (idle, or in the expert stage).
/// remote_ranks[i] is the EP rank of remote index i.
std::optional<exchange_stall> running_exchange(const exchange_snapshot& s, std::span<const int> remote_ranks);

/// Follows one stall across polls: returns it once the same exchange (exchange_stall::same_exchange)
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
    const std::uint64_t* combines = nullptr;       ///< device memory (combines_done)
    const std::uint64_t* dispatch_done = nullptr;  ///< device memory
    device_faults* faults = nullptr;               ///< device memory: where the timeout is recorded
    std::vector<int> remote_ranks;                 ///< EP rank of each remote index
  };
  /// Starts the thread (on `device`). `comm`, `calls` (held around every NCCL call on
  /// `comm`) and `failed` must outlive the guard.
  exchange_guard(watched what, ncclComm_t comm, std::timed_mutex& calls, int device, int rank, double limit_seconds,
                 std::atomic<bool>& failed);
  ~exchange_guard() { stop(); }
  exchange_guard(const exchange_guard&) = delete;
  exchange_guard& operator=(const exchange_guard&) = delete;

  /// Asks the thread to revoke the communicator now. Local, never throws, never waits.
  void request_abort() noexcept;
  /// Ends the thread (waits for a revoke in progress). Never throws; idempotent.
  void stop() noexcept;

 private:
  void run() noexcept;
  bool poll(exchange_snapshot& s) noexcept;
  void fire(const exchange_stall& stall) noexcept;
  void revoke() noexcept;

  watched what_;
  ncclComm_t comm_;
  std::timed_mutex& calls_;
  int device_, rank_;
  double limit_seconds_;
  std::atomic<bool>& failed_;
  cudaStream_t stream_ = nullptr;
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stopping_ = false, abort_requested_ = false, revoked_ = false;
  std::thread thread_;
};

}  // namespace epgraph::comm::detail
