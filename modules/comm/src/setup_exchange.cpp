// NCCL connects point-to-point peers at their first exchange, inside ncclGroupEnd, where the
// host thread waits for the peer to connect too. One small exchange with every remote rank
// while all ranks are in setup (the agreement before it saw every one) makes those connections
// here (NCCL 2.28 marks all of a peer's point-to-point channels for connection at its first
// send or receive, whatever the size: p2pTaskAppend), so no step's exchange waits on the host
// for a connection to a peer that stopped before its first step; the exchange guard cannot end
// a wait on the host. Each rank sends combine_started to every remote rank and receives into
// its dispatch row of remote_words, zeroed again after.
//
// The exchange's own deadline: NCCL gives none, neither for the connection (host) nor for its
// kernel (GPU). A thread revokes the exchange communicator when the agreement's wait has passed
// (revoke_at_deadline.hpp); that ends both (Domains.ARankThatStallsBeforeTheSetupExchange...).
#include "setup_exchange.hpp"

#include <cuda_runtime_api.h>
#include <nccl.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "backoff.hpp"
#include "revoke_at_deadline.hpp"
#include "epgraph/comm/cuda_handles.hpp"
#include "epgraph/comm/error.hpp"
#include "epgraph/comm/unique_handle.hpp"
#include "session_state.hpp"

namespace epgraph::comm::detail {
setup_stall_for_tests& setup_stall() noexcept {
  static setup_stall_for_tests stall;
  return stall;
}

void connect_remote_ranks(session_state& s) {
  const session_view& v = s.view;
  const int remote = v.ep_size - v.domain_size;
  if (setup_stall().rank.load() == s.rank)
    std::this_thread::sleep_for(std::chrono::duration<double>(setup_stall().seconds.load()));
  auto* words = v.remote_at<std::uint64_t>(s.layout.remote_words);
  const auto* word = v.remote_at<std::uint64_t>(s.layout.combine_started);
  cudaStream_t raw = nullptr;
  EPG_CHECK_CUDA(cudaStreamCreateWithFlags(&raw, cudaStreamNonBlocking));
  const unique_handle<stream_traits> stream(raw);
  const double limit = s.agree.wait_seconds();
  // NCCL's work may still run (a revocation that did not end it): the session's destructor
  // then aborts the communicator between domains (failed), which ends it, before any memory goes.
  auto timed_out = [&](bool revoked) {
    s.failed = true;
    return error(error_domain::nccl, "session setup: connections between domains", 0,
                 "not every rank of another domain took part in the setup exchange within " + seconds_text(limit) +
                     (revoked ? "; this rank revoked the session's communicator between domains"
                              : "; revoking the session's communicator between domains did not end NCCL's wait"),
                 "a rank of another domain failed or stalled during session creation (see its message): destroy the "
                 "session on every rank");
  };
  revoke_at_deadline deadline(s.remote.get(), limit);
  ncclResult_t first = ncclSuccess, ended = ncclSuccess;
  {
    const std::lock_guard<std::timed_mutex> alone(*s.remote_calls);
    first = ncclGroupStart();
    for (int i = 0; i < remote && first == ncclSuccess; ++i) {
      const ncclResult_t sent = ncclSend(word, 1, ncclUint64, v.remote_rank(i), s.remote.get(), stream.get());
      const ncclResult_t received = ncclRecv(words + i, 1, ncclUint64, v.remote_rank(i), s.remote.get(), stream.get());
      first = sent != ncclSuccess ? sent : received;
    }
    ended = ncclGroupEnd();  // always ended, also after a failed send or recv
  }
  if (deadline.fired()) throw timed_out(deadline.finish() && deadline.revoked());
  EPG_CHECK_NCCL(first);
  EPG_CHECK_NCCL(ended);
  // NCCL's kernel waits for every remote rank's half; revoking at the deadline ends it.
  for (backoff wait;; wait.pause()) {
    const cudaError_t done = cudaStreamQuery(stream.get());
    if (done == cudaSuccess) break;
    if (done != cudaErrorNotReady) EPG_CHECK_CUDA(done);
    if (!deadline.fired()) continue;
    deadline.finish();  // the revocation has returned
    if (!deadline.revoked() || !ends_within(stream.get(), std::chrono::seconds(10))) throw timed_out(false);
    break;  // ended by the revocation: reported below
  }
  if (deadline.finish()) throw timed_out(deadline.revoked());
  std::vector<std::uint64_t> got(static_cast<std::size_t>(remote));
  EPG_CHECK_CUDA(cudaMemcpy(got.data(), words, got.size() * sizeof(std::uint64_t), cudaMemcpyDeviceToHost));
  for (int i = 0; i < remote; ++i)
    if (got[i] != 1)
      throw error(error_domain::nccl, "session setup: first exchange with rank " + std::to_string(v.remote_rank(i)), 0,
                  "received " + std::to_string(got[i]) + " instead of 1", "run with NCCL_DEBUG=WARN for the cause");
  EPG_CHECK_CUDA(cudaMemset(words, 0, s.layout.remote_words.bytes));
  EPG_CHECK_CUDA(cudaDeviceSynchronize());
}

}  // namespace epgraph::comm::detail
