#pragma once
// Revokes an NCCL communicator from a thread of its own unless finish() comes within a time:
// bounds a host call that NCCL gives no deadline. NCCL connects peers lazily, inside the first
// call that needs them, and waits on the host until every peer takes part; revoking the
// communicator from another thread ends that wait (the call returns an error) and ends NCCL's
// kernels (measured on H200 with NCCL 2.28.9: tests/probes/first_contact.cpp, perf-notes v14).
// That breaks NCCL's one-thread-per-communicator rule on purpose, as the exchange guard does
// when a thread is stuck inside NCCL: only a call that would otherwise wait for ever is cut.
#include <nccl.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

namespace epgraph::comm::detail {

/// Revokes `comm` unless finish() comes within `seconds` (0: never). Joins in its destructor.
class revoke_at_deadline {
 public:
  revoke_at_deadline(ncclComm_t comm, double seconds) {
    if (seconds <= 0) return;
    thread_ = std::thread([this, comm, seconds] {
      std::unique_lock<std::mutex> lock(mutex_);
      if (wake_.wait_for(lock, std::chrono::duration<double>(seconds), [this] { return finished_; })) return;
      lock.unlock();
      fired_ = true;  // before revoking: the NCCL call it ends then sees why
      const ncclResult_t r = ncclCommRevoke(comm, NCCL_REVOKE_DEFAULT);
      revoked_ = r == ncclSuccess || r == ncclInProgress;
    });
  }
  ~revoke_at_deadline() { finish(); }
  revoke_at_deadline(const revoke_at_deadline&) = delete;
  revoke_at_deadline& operator=(const revoke_at_deadline&) = delete;

  /// Stops the clock; true when the deadline passed (and the communicator was revoked or tried).
  bool finish() noexcept {
    {
      const std::lock_guard<std::mutex> lock(mutex_);
      finished_ = true;
    }
    wake_.notify_all();
    if (thread_.joinable()) thread_.join();
    return fired_;
  }
  bool fired() const noexcept { return fired_; }
  bool revoked() const noexcept { return revoked_; }

 private:
  std::mutex mutex_;
  std::condition_variable wake_;
  bool finished_ = false;
  std::atomic<bool> fired_{false}, revoked_{false};
  std::thread thread_;
};

}  // namespace epgraph::comm::detail
