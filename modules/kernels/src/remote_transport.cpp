// NCCL point-to-point between domains: one group per exchange, every remote rank in rank
// order, the same order of messages on both sides (NCCL pairs a pair's sends and receives in
// issue order).
#include "remote_transport.hpp"

#include <nccl.h>

#include <cstdint>
#include <mutex>
#include <vector>

#include "epgraph/comm/workspace_layout.hpp"

namespace epgraph::kernels::detail {

exchange_plan plan_exchanges(const comm::session_view& v, const std::vector<std::size_t>& payload_row_bytes) {
  const comm::workspace_layout& l = v.layout;
  const auto max_tokens = static_cast<std::size_t>(v.max_tokens);
  const int remote = v.ep_size - v.domain_size;
  auto* word = v.local_at<std::uint64_t>(l.dispatch_word);
  auto* words_in = v.remote_at<std::uint64_t>(l.remote_words);
  const std::size_t id_row = static_cast<std::size_t>(v.top_k) * sizeof(std::int32_t);
  exchange_plan plan;
  plan.self = v.rank;
  plan.combine_mark = {v.remote_at<std::uint64_t>(l.combine_started), v.remote_at<std::uint64_t>(l.combine_mark),
                       sizeof(std::uint64_t)};
  plan.dispatch_done = {word, v.remote_at<std::uint64_t>(l.dispatch_done), sizeof(std::uint64_t)};
  plan.combines_done = {nullptr, v.remote_at<std::uint64_t>(l.combines_done), sizeof(std::uint64_t)};
  plan.remote_words = {nullptr, words_in, l.remote_words.bytes};
  for (int i = 0; i < remote; ++i) {
    const int d = v.remote_rank(i);
    plan.peers.push_back(d);
    std::vector<exchange_message> dispatch;
    auto rows = [&](const comm::region& stage, const comm::region& recv, std::size_t row) {
      dispatch.push_back({v.remote_state + v.remote_row_offset(stage, d, 0, row),
                          v.window_local + v.row_offset(recv, d, 0, row), max_tokens * row});
    };
    rows(l.staged_topk_ids, l.topk_ids, id_row);
    for (int p = 0; p < l.num_payloads; ++p) rows(l.staged_payloads[p], l.payloads[p], payload_row_bytes.at(p));
    dispatch.push_back({v.remote_at<std::int32_t>(l.staged_counts) + i, v.window_at<std::int32_t>(l.counts) + d,
                        sizeof(std::int32_t)});
    dispatch.push_back({word, words_in + i, sizeof(std::uint64_t)});
    plan.dispatch.push_back(std::move(dispatch));
    plan.combine.push_back({{v.window_local + v.row_offset(l.combine, d, 0, l.combine_row_bytes),
                             v.remote_state + v.remote_row_offset(l.remote_partials, d, 0, l.combine_row_bytes),
                             max_tokens * l.combine_row_bytes},
                            {word, words_in + remote + i, sizeof(std::uint64_t)}});
  }
  return plan;
}

namespace {

class nccl_p2p_transport final : public remote_transport {
 public:
  nccl_p2p_transport(const comm::ep_session& session, exchange_plan plan)
      : comm_(session.remote_comm()), calls_(session.remote_calls()), link_(session.link()), plan_(std::move(plan)) {}

  cudaError_t exchange_dispatch(cudaStream_t stream, bool kernel_launched) const noexcept override {
    const cudaError_t exchanged = exchange(plan_.dispatch, stream, nullptr, !kernel_launched);
    if (exchanged == cudaErrorInvalidResourceHandle) return exchanged;  // the session is gone, and its memory
    // Also after a failed enqueue: the caller gets that error, and the guard must not report a
    // timeout for an exchange that never started.
    const exchange_message& done = plan_.dispatch_done;
    const cudaError_t copied = cudaMemcpyAsync(done.recv, done.send, done.bytes, cudaMemcpyDeviceToDevice, stream);
    return exchanged != cudaSuccess ? exchanged : copied;
  }
  cudaError_t exchange_combine(cudaStream_t stream) const noexcept override {
    return exchange(plan_.combine, stream, &plan_.combine_mark);
  }
  cudaError_t clear_combine_mark(cudaStream_t stream) const noexcept override {
    // What the kernel would have done: the mark cleared, and the count of combines moved on,
    // here to all bits (no count of combines reaches it), so that the guard tells the next
    // combine of the same dispatch from this one. (Two such failures in a row look alike.)
    const cudaError_t cleared = cudaMemsetAsync(plan_.combine_mark.recv, 0, plan_.combine_mark.bytes, stream);
    const cudaError_t counted = cudaMemsetAsync(plan_.combines_done.recv, 0xFF, plan_.combines_done.bytes, stream);
    return cleared != cudaSuccess ? cleared : counted;
  }

 private:
  // Every message to and from each remote rank, in one NCCL group. NCCL's errors become
  // cudaErrorLaunchFailure (run() returns a cudaError_t); the group is always ended. Under
  // the session's lock of the communicator, which the exchange guard takes to revoke it: an
  // exchange never starts on a communicator being revoked, and a failed session enqueues
  // nothing. (The lock is shared so that locking it is safe; destroying a session while
  // another thread runs its ops is not supported.)
  cudaError_t exchange(const std::vector<std::vector<exchange_message>>& per_peer, cudaStream_t stream,
                       const exchange_message* to_self = nullptr, bool mark_not_launched = false) const noexcept {
    const std::lock_guard<std::timed_mutex> alone(*calls_);
    if (const cudaError_t st = link_.launch_status(); st != cudaSuccess) return st;
    static_assert(comm::dispatch_not_launched == ~std::uint64_t{0}, "the byte memset below writes all bits");
    // No dispatch kernel ran: what it would have done for the guard, here (its words zeroed,
    // so that the guard names only the ranks still missing). A failed mark does not stop the
    // exchange: the other domains wait for it.
    cudaError_t marked = cudaSuccess;
    if (mark_not_launched) {
      marked = cudaMemsetAsync(plan_.remote_words.recv, 0, plan_.remote_words.bytes, stream);
      if (marked == cudaSuccess)
        marked = cudaMemsetAsync(plan_.dispatch_done.recv, 0xFF, plan_.dispatch_done.bytes, stream);
    }
    ncclResult_t first = ncclGroupStart();
    if (first != ncclSuccess) return cudaErrorLaunchFailure;
    if (to_self) {
      // A copy inside NCCL's kernel that waits for no peer: done as soon as the exchange runs.
      first = ncclSend(to_self->send, to_self->bytes, ncclUint8, plan_.self, comm_, stream);
      const ncclResult_t received = ncclRecv(to_self->recv, to_self->bytes, ncclUint8, plan_.self, comm_, stream);
      if (first == ncclSuccess) first = received;
    }
    for (std::size_t i = 0; i < plan_.peers.size(); ++i) {
      for (const exchange_message& m : per_peer[i]) {
        const ncclResult_t sent = ncclSend(m.send, m.bytes, ncclUint8, plan_.peers[i], comm_, stream);
        const ncclResult_t received = ncclRecv(m.recv, m.bytes, ncclUint8, plan_.peers[i], comm_, stream);
        if (first == ncclSuccess) first = sent != ncclSuccess ? sent : received;
      }
    }
    const ncclResult_t ended = ncclGroupEnd();
    if (first == ncclSuccess) first = ended;
    if (first != ncclSuccess) return cudaErrorLaunchFailure;
    return marked;
  }

  ncclComm_t comm_;
  std::shared_ptr<std::timed_mutex> calls_;
  comm::session_link link_;
  exchange_plan plan_;
};

}  // namespace

std::shared_ptr<const remote_transport> make_remote_transport(const comm::ep_session& session) {
  if (session.view().domain_size == session.view().ep_size) return nullptr;
  std::vector<std::size_t> rows;
  for (const auto& p : session.config().payloads) rows.push_back(p.row_bytes);
  return std::make_shared<nccl_p2p_transport>(session, plan_exchanges(session.view(), rows));
}

}  // namespace epgraph::kernels::detail
