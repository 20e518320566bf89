#include "exchange_guard.hpp"

#include <cmath>
#include <cstdio>

#include "epgraph/comm/error.hpp"
#include "epgraph/comm/progress.hpp"

namespace epgraph::comm::detail {

std::optional<exchange_stall> running_exchange(const exchange_snapshot& s, std::span<const int> remote_ranks) {
  if (s.dispatch_word == 0) return std::nullopt;  // no dispatch yet
  const std::size_t remote = remote_ranks.size();
  if (s.words.size() != 2 * remote) return std::nullopt;
  const auto missing_in = [&](std::size_t row) {
    std::uint64_t missing = 0;
    for (std::size_t i = 0; i < remote; ++i)
      if (s.words[row * remote + i] == 0) missing |= std::uint64_t{1} << remote_ranks[i];
    return missing;
  };
  exchange_stall stall;
  stall.dispatch_word = s.dispatch_word;
  if ((stall.missing = missing_in(0)) != 0) {
    stall.op = collective_kind::dispatch;
    return stall;
  }
  // Between the exchanges (the expert stage) nothing is watched: the mark is still 0.
  if (s.mark != 0 && (stall.missing = missing_in(1)) != 0) {
    stall.op = collective_kind::combine;
    return stall;
  }
  return std::nullopt;
}

std::optional<exchange_stall> stall_timer::observe(const std::optional<exchange_stall>& running,
                                                   std::chrono::steady_clock::time_point now) {
  const bool same = running && current_ && running->dispatch_word == current_->dispatch_word &&
                    running->op == current_->op;
  if (!same) {
    current_ = running;
    since_ = now;
    return std::nullopt;
  }
  current_->missing = running->missing;  // ranks whose words came meanwhile are not named
  if (now - since_ > limit_) return current_;
  return std::nullopt;
}

exchange_guard::exchange_guard(watched what, ncclComm_t comm, int device, int rank, double limit_seconds,
                               std::atomic<bool>& failed)
    : what_(std::move(what)), comm_(comm), device_(device), rank_(rank), limit_seconds_(limit_seconds), failed_(failed) {
  EPG_CHECK_CUDA(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  thread_ = std::thread([this] { run(); });
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
  const std::size_t remote = what_.remote_ranks.size();
  s.words.resize(2 * remote);
  // Pageable destinations: the copies wait for this stream only, never for the device.
  cudaError_t st = cudaMemcpyAsync(&s.dispatch_word, what_.dispatch_word, sizeof(std::uint64_t),
                                   cudaMemcpyDeviceToHost, stream_);
  if (st == cudaSuccess)
    st = cudaMemcpyAsync(&s.mark, what_.mark, sizeof(std::uint64_t), cudaMemcpyDeviceToHost, stream_);
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
  if (cudaSetDevice(device_) != cudaSuccess) return;
  cudaStreamCaptureMode relaxed = cudaStreamCaptureModeRelaxed;
  (void)cudaThreadExchangeStreamCaptureMode(&relaxed);
  stall_timer timer{std::chrono::duration<double>(limit_seconds_)};
  exchange_snapshot s;
  bool watching = true;
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait_for(lock, std::chrono::milliseconds(10), [this] { return stopping_ || abort_requested_; });
      if (abort_requested_) break;
      if (stopping_) return;
    }
    if (!watching || limit_seconds_ <= 0) continue;  // deadline 0: no deadline, wait for stop or abort
    if (!poll(s)) {
      watching = false;
      continue;
    }
    if (const auto stall = timer.observe(running_exchange(s, what_.remote_ranks), std::chrono::steady_clock::now())) {
      fire(*stall);
      return;
    }
  }
  abort_comm();
}

void exchange_guard::fire(const exchange_stall& stall) noexcept {
  fault_record f;
  f.code = fault_code::exchange_timeout;
  f.op = stall.op;
  f.seq = progress_seq(stall.dispatch_word);
  f.missing = stall.missing;
  for (int p = 0; p < 64; ++p)
    if ((stall.missing >> p) & 1u) {
      f.peer = p;
      break;
    }
  f.value = static_cast<std::int32_t>(std::lround(limit_seconds_));
  std::fprintf(stderr, "epgraph: rank %d: %s\n", rank_, describe(f).c_str());
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
  abort_comm();
}

void exchange_guard::abort_comm() noexcept {
  failed_ = true;
  if (aborted_.exchange(true)) return;
  const ncclResult_t r = ncclCommAbort(comm_);
  if (r != ncclSuccess)
    std::fprintf(stderr, "epgraph: rank %d: ncclCommAbort of the communicator between domains: %s\n", rank_,
                 ncclGetErrorString(r));
}

}  // namespace epgraph::comm::detail
