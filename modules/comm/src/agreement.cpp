#include "agreement.hpp"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <sstream>
#include <string>
#include <thread>

#include "epgraph/comm/error.hpp"

namespace epgraph::comm::detail {
namespace {

std::string rank_list(const std::vector<int>& ranks) {
  std::ostringstream out;
  out << (ranks.size() == 1 ? "rank " : "ranks ");
  for (std::size_t i = 0; i < ranks.size(); ++i) out << (i ? ", " : "") << ranks[i];
  return out.str();
}

std::string seconds(double s) {
  std::ostringstream out;
  out << s << " s";
  return out.str();
}

// Polling pause: short at first (agreements usually complete within microseconds), then
// backing off so a long wait does not spin a CPU core.
class backoff {
 public:
  void pause() {
    std::this_thread::sleep_for(pause_);
    pause_ = std::min(pause_ * 2, std::chrono::microseconds(1000));
  }

 private:
  std::chrono::microseconds pause_{5};
};

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
  return deadline_seconds_ > 0 &&
         std::chrono::steady_clock::now() - start > std::chrono::duration<double>(deadline_seconds_);
}

void rank_agreement::fail(std::string_view what, std::string message, std::string hint) {
  failed_ = true;
  throw error(error_domain::peer, std::string(what) + " (rank " + std::to_string(rank_) + ")", 0, std::move(message),
              std::move(hint));
}

std::vector<std::vector<std::int64_t>> rank_agreement::exchange(std::string_view what,
                                                                std::span<const std::int64_t> mine,
                                                                bool left_is_arrived) {
  if (mine.size() > static_cast<std::size_t>(mailbox_values))
    throw error(error_domain::internal, std::string(what), 0, "too many values for one agreement round", {});
  if (left_)
    fail(what, "this rank already left the session", "the session was aborted or torn down: create a new one");
  return attached() ? exchange_mailbox(what, mine, left_is_arrived) : exchange_nccl(what, mine);
}

std::vector<std::vector<std::int64_t>> rank_agreement::exchange_nccl(std::string_view what,
                                                                     std::span<const std::int64_t> mine) {
  auto* mine_d = scratch_.as<std::int64_t>();
  auto* all_d = mine_d + mailbox_values;
  std::vector<std::int64_t> padded(mailbox_values, 0);
  std::copy(mine.begin(), mine.end(), padded.begin());
  cudaStream_t s = stream_.get();
  EPG_CHECK_CUDA(cudaMemcpyAsync(mine_d, padded.data(), padded.size() * sizeof(std::int64_t),
                                 cudaMemcpyHostToDevice, s));
  EPG_CHECK_NCCL(ncclAllGather(mine_d, all_d, mailbox_values, ncclInt64, comm_, s));
  const auto start = std::chrono::steady_clock::now();
  for (backoff wait;; wait.pause()) {
    const cudaError_t done = cudaStreamQuery(s);
    if (done == cudaSuccess) break;
    if (done != cudaErrorNotReady) EPG_CHECK_CUDA(done);
    ncclResult_t async = ncclSuccess;
    EPG_CHECK_NCCL(ncclCommGetAsyncError(comm_, &async));
    if (async != ncclSuccess && async != ncclInProgress) EPG_CHECK_NCCL(async);
    if (past_deadline(start)) {
      stuck_ = true;
      fail(what,
           "not every rank reached '" + std::string(what) + "' (session setup, over NCCL) within " +
               seconds(deadline_seconds_),
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
    all[r].assign(first, first + mine.size());
  }
  return all;
}

void rank_agreement::read_mailbox(std::size_t parity, std::vector<mailbox_slot>& out) {
  out.resize(static_cast<std::size_t>(ranks_));
  const char* src = mailbox_.window_local + mailbox_.mailbox_offset + parity * ranks_ * sizeof(mailbox_slot);
  EPG_CHECK_CUDA(cudaMemcpyAsync(out.data(), src, out.size() * sizeof(mailbox_slot), cudaMemcpyDeviceToHost,
                                 stream_.get()));
  EPG_CHECK_CUDA(cudaStreamSynchronize(stream_.get()));
}

std::vector<std::vector<std::int64_t>> rank_agreement::exchange_mailbox(std::string_view what,
                                                                        std::span<const std::int64_t> mine,
                                                                        bool left_is_arrived) {
  mailbox_slot slot;
  slot.round = ++round_;
  std::memcpy(slot.what, what.data(), std::min(what.size(), sizeof slot.what - 1));
  std::copy(mine.begin(), mine.end(), slot.values);
  EPG_CHECK_CUDA(post_mail(mailbox_, slot, stream_.get()));
  const std::size_t parity = slot.round & 1u;
  std::vector<mailbox_slot> seen;
  const auto start = std::chrono::steady_clock::now();
  for (backoff wait;; wait.pause()) {
    read_mailbox(parity, seen);
    std::vector<int> missing, left;
    for (int r = 0; r < ranks_; ++r) {
      if (seen[r].round == left_round) left.push_back(r);
      else if (seen[r].round < slot.round) missing.push_back(r);
    }
    if (!left.empty() && !left_is_arrived)
      fail(what, rank_list(left) + " left the session before '" + std::string(what) + "'",
           "it aborted or is unwinding from an error (see its message); this rank is healthy: destroy the "
           "session on every rank");
    if (missing.empty()) break;
    if (past_deadline(start))
      fail(what, rank_list(missing) + " did not reach '" + std::string(what) + "' within " + seconds(deadline_seconds_),
           "they stalled, died, or ran another sequence of session calls; the session is unusable: destroy it");
  }
  // Read once more: the round was seen, so every body is now complete (the peer fenced it
  // before the round) and stays until this rank posts its next round.
  read_mailbox(parity, seen);
  std::vector<std::vector<std::int64_t>> all(static_cast<std::size_t>(ranks_));
  for (int r = 0; r < ranks_; ++r) {
    if (seen[r].round == left_round) continue;
    if (std::strncmp(seen[r].what, slot.what, sizeof slot.what) != 0)
      fail(what, "rank " + std::to_string(r) + " is in '" + std::string(seen[r].what) + "' while this rank is in '" +
                     std::string(slot.what) + "'",
           "every rank must plan ops and step graphs, check faults, barrier and tear down sessions in the same order");
    all[r].assign(seen[r].values, seen[r].values + mine.size());
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
  const std::vector<int> failing = failing_ranks(what, !failure);
  if (failure) std::rethrow_exception(failure);
  if (!failing.empty())
    throw error(error_domain::peer, std::string(what) + " (rank " + std::to_string(rank_) + ")", 0,
                rank_list(failing) + " failed this step; every rank throws together",
                "see the failing rank's message; this rank is healthy and the ranks are still in step");
}

void rank_agreement::leave(fault_code reason) noexcept {
  failed_ = true;
  if (left_ || !attached() || stuck_) return;
  left_ = true;
  const cudaError_t posted = post_leave(mailbox_, reason, stream_.get());
  const cudaError_t done = posted == cudaSuccess ? cudaStreamSynchronize(stream_.get()) : posted;
  if (done != cudaSuccess)
    std::fprintf(stderr, "epgraph: rank %d could not tell its peers that it left the session: %s\n", rank_,
                 cudaGetErrorString(done));
}

}  // namespace epgraph::comm::detail
