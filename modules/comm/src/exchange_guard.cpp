#include "exchange_guard.hpp"

#include <cmath>
#include <cstdio>

#include "epgraph/comm/error.hpp"
#include "epgraph/comm/progress.hpp"
#include "epgraph/comm/workspace_layout.hpp"

namespace epgraph::comm::detail {

std::optional<exchange_stall> running_exchange(const exchange_snapshot& s, std::span<const int> remote_ranks) {
  const std::size_t remote = remote_ranks.size();
  if (s.words.size() != 2 * remote) return std::nullopt;
  exchange_stall stall;
  stall.dispatch_word = s.dispatch_word;
  stall.combines = s.combines;
  // Both words start at 0; they differ from the dispatch kernel's new word (or the mark set
  // in place of a kernel that did not launch) until the copy after the exchange.
  if (s.dispatch_word != s.dispatch_done) {
    stall.op = collective_kind::dispatch;
    stall.unlaunched = s.dispatch_done == dispatch_not_launched;
  } else if (s.mark != 0) {
    stall.op = collective_kind::combine;
  } else {
    return std::nullopt;  // idle, or between the exchanges (the expert stage is not watched)
  }
  const std::size_t row = stall.op == collective_kind::combine ? 1 : 0;
  std::uint64_t all = 0;
  for (std::size_t i = 0; i < remote; ++i) {
    const std::uint64_t bit = std::uint64_t{1} << remote_ranks[i];
    all |= bit;
    if (s.words[row * remote + i] == 0) stall.missing |= bit;
  }
  if (stall.missing == 0) stall.missing = all;
  return stall;
}

std::optional<exchange_stall> stall_timer::observe(const std::optional<exchange_stall>& running,
                                                   std::chrono::steady_clock::time_point now) {
  const bool same = running && current_ && running->same_exchange(*current_);
  if (!same) {
    current_ = running;
    since_ = now;
    return std::nullopt;
  }
  current_->missing = running->missing;  // ranks whose words came meanwhile are not named
  if (now - since_ > limit_) return current_;
  return std::nullopt;
}

exchange_guard::exchange_guard(watched what, ncclComm_t comm, std::timed_mutex& calls, int device, int rank,
                               double limit_seconds, std::atomic<bool>& failed)
    : what_(std::move(what)),
      comm_(comm),
      calls_(calls),
      device_(device),
      rank_(rank),
      limit_seconds_(limit_seconds),
      failed_(failed) {
  EPG_CHECK_CUDA(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  try {
    thread_ = std::thread([this] { run(); });
  } catch (...) {
    (void)cudaStreamDestroy(stream_);
    throw;
  }
}

void exchange_guard::request_abort() noexcept {
  {
    const std::lock_guard<std::mutex> lock(mutex_);
    abort_requested_ = true;
  }
  wake_.notify_all();
}

void exchange_guard::stop() noexcept {
  {
    const std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
  if (stream_) {
    (void)cudaStreamDestroy(stream_);  // returns at once; nothing of the guard is queued after join
    stream_ = nullptr;
  }
}

bool exchange_guard::poll(exchange_snapshot& s) noexcept {
  // s.words is sized once, before the loop. Pageable destinations: the copies wait for this
  // stream only, never for the device.
  cudaError_t st = cudaMemcpyAsync(&s.dispatch_word, what_.dispatch_word, sizeof(std::uint64_t),
                                   cudaMemcpyDeviceToHost, stream_);
  if (st == cudaSuccess)
    st = cudaMemcpyAsync(&s.dispatch_done, what_.dispatch_done, sizeof(std::uint64_t), cudaMemcpyDeviceToHost,
                         stream_);
  if (st == cudaSuccess)
    st = cudaMemcpyAsync(&s.mark, what_.mark, sizeof(std::uint64_t), cudaMemcpyDeviceToHost, stream_);
  if (st == cudaSuccess)
    st = cudaMemcpyAsync(&s.combines, what_.combines, sizeof(std::uint64_t), cudaMemcpyDeviceToHost, stream_);
  if (st == cudaSuccess)
    st = cudaMemcpyAsync(s.words.data(), what_.remote_words, s.words.size() * sizeof(std::uint64_t),
                         cudaMemcpyDeviceToHost, stream_);
  if (st == cudaSuccess) st = cudaStreamSynchronize(stream_);
  if (st != cudaSuccess)
    std::fprintf(stderr, "epgraph: rank %d stops watching its exchanges between domains: %s\n", rank_,
                 cudaGetErrorString(st));
  return st == cudaSuccess;
}

void exchange_guard::run() noexcept {
  // This thread's CUDA calls must not be refused while another thread captures a graph in
  // global mode (they never touch a capturing stream).
  bool watching = limit_seconds_ > 0 && cudaSetDevice(device_) == cudaSuccess;
  cudaStreamCaptureMode relaxed = cudaStreamCaptureModeRelaxed;
  (void)cudaThreadExchangeStreamCaptureMode(&relaxed);
  stall_timer timer{std::chrono::duration<double>(limit_seconds_)};
  exchange_snapshot s;
  s.words.resize(2 * what_.remote_ranks.size());  // before any poll: poll never allocates
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mutex_);
      if (watching) wake_.wait_for(lock, std::chrono::milliseconds(10), [this] { return stopping_ || abort_requested_; });
      else wake_.wait(lock, [this] { return stopping_ || abort_requested_; });
      if (abort_requested_) break;
      if (stopping_) return;
    }
    if (!poll(s)) {
      watching = false;  // still serves request_abort()
      continue;
    }
    const auto stall = timer.observe(running_exchange(s, what_.remote_ranks), std::chrono::steady_clock::now());
    if (!stall) continue;
    // A last look, so that an exchange that completed since the poll is not revoked.
    if (!poll(s)) {
      watching = false;
      continue;
    }
    const auto still = running_exchange(s, what_.remote_ranks);
    if (!still || !still->same_exchange(*stall)) continue;
    fire(*still);
    return;
  }
  revoke();
}

void exchange_guard::fire(const exchange_stall& stall) noexcept {
  fault_record f;
  f.code = fault_code::exchange_timeout;
  f.op = stall.op;
  f.seq = progress_seq(stall.dispatch_word);  // the dispatch the exchange belongs to (or follows)
  if (stall.unlaunched) f.entry = 1;
  f.missing = stall.missing;
  for (int p = 0; p < 64; ++p)
    if ((stall.missing >> p) & 1u) {
      f.peer = p;
      break;
    }
  f.value = static_cast<std::int32_t>(std::lround(limit_seconds_));
  try {
    std::fprintf(stderr, "epgraph: rank %d: %s\n", rank_, describe(f).c_str());
  } catch (...) {  // no memory for the text: the fault record still says it
  }
  failed_ = true;  // refuse launches before NCCL's kernels end and the stream moves on
  // Copies, not a kernel: loading a kernel's module lazily (CUDA's default) would wait for the
  // stuck NCCL kernel. The first fatal fault stays (kernels of this session's stream cannot
  // write one meanwhile: NCCL's kernel holds the stream).
  fault_record first;
  cudaError_t st = cudaMemcpyAsync(&first, &what_.faults->fatal, sizeof first, cudaMemcpyDeviceToHost, stream_);
  if (st == cudaSuccess) st = cudaStreamSynchronize(stream_);
  if (st == cudaSuccess && first.code == fault_code::none) {
    st = cudaMemcpyAsync(&what_.faults->fatal, &f, sizeof f, cudaMemcpyHostToDevice, stream_);
    if (st == cudaSuccess) st = cudaStreamSynchronize(stream_);
  }
  if (st != cudaSuccess)
    std::fprintf(stderr, "epgraph: rank %d could not record the exchange timeout: %s\n", rank_, cudaGetErrorString(st));
  revoke();
}

void exchange_guard::revoke() noexcept {
  failed_ = true;  // launches are refused from here on
  if (revoked_) return;
  revoked_ = true;
  // Revoke, not abort: the communicator stays a valid handle for the threads that may still
  // hold it (the session's ops); the owner aborts it later on its own thread. Alone on it:
  // an exchange being enqueued finishes first, the next sees the session failed. A thread
  // blocked inside NCCL on it (a connection to a peer that never comes) is what revoking
  // must end, so after a while it revokes anyway.
  std::unique_lock<std::timed_mutex> alone(calls_, std::defer_lock);
  if (!alone.try_lock_for(std::chrono::seconds(2)))
    std::fprintf(stderr, "epgraph: rank %d revokes its communicator between domains while another thread has been "
                         "inside an NCCL call on it for 2 s\n", rank_);
  const ncclResult_t r = ncclCommRevoke(comm_, NCCL_REVOKE_DEFAULT);
  if (r != ncclSuccess && r != ncclInProgress)
    std::fprintf(stderr, "epgraph: rank %d: ncclCommRevoke of the communicator between domains: %s\n", rank_,
                 ncclGetErrorString(r));
}

}  // namespace epgraph::comm::detail
