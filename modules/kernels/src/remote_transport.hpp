#pragma once
// The part of a step that crosses NVLink domains, behind one small interface: dispatch and
// combine call it around their kernels, nothing else knows how rows reach the other domains.
//
//   exchange_dispatch (after the dispatch kernel): the rows the kernel staged for each remote
//     rank, its token count and this rank's dispatch word go to that rank's receive regions
//     ([this rank] blocks), count and remote_words[0]; the same arrive from it. Then a copy of
//     the dispatch word into dispatch_done marks the exchange complete (for the guard). When
//     the kernel did not launch (no new word), dispatch_done is first set to
//     dispatch_not_launched, so that the guard watches this exchange too.
//   exchange_combine (before the combine kernel): this rank's combine rows for each remote
//     rank (its [remote] block of the combine region) and the dispatch word go to that rank's
//     remote_partials and remote_words[1]; the same arrive from it. First of all, a constant
//     word (combine_started, 1) goes to this rank itself (combine_mark): the exchange guard's
//     sign that it started, also for a combine before any dispatch.
//
// Both only enqueue on the stream (capture-safe), never allocate, never throw. Sizes are
// fixed slabs of max_tokens_per_rank rows per remote rank, so a captured graph serves every
// token count (docs/domains.md says what that costs). Today's implementation is NCCL
// point-to-point on the session's remote communicator; a device-initiated network path (GIN)
// would implement the same two calls.
#include <cuda_runtime_api.h>

#include <cstddef>
#include <memory>
#include <vector>

#include "epgraph/comm/ep_session.hpp"

namespace epgraph::kernels::detail {

/// One NCCL message of an exchange: what this rank sends to a remote rank, and where the same
/// message from that rank lands here (both have `bytes`: the plans of two ranks pair).
struct exchange_message {
  const void* send;
  void* recv;
  std::size_t bytes;
};
/// Every message of both exchanges, per remote rank (ascending), in the order both sides post
/// them. Pure: a function of the session view and the payload row sizes, unit-tested for pairing.
struct exchange_plan {
  std::vector<int> peers;
  std::vector<std::vector<exchange_message>> dispatch, combine;  ///< [remote index][message]
  /// Posted first in the combine exchange, to this rank itself: combine_started (1) into its
  /// combine_mark, which tells the exchange guard that the combine exchange started.
  int self = -1;
  exchange_message combine_mark{};
  /// Copied (cudaMemcpyAsync) after the dispatch exchange's group: the dispatch word into
  /// dispatch_done, the guard's sign that the whole exchange, sends included, completed.
  exchange_message dispatch_done{};
  /// Zeroed (recv only) before the exchange of a dispatch whose kernel did not launch: both rows
  /// of remote_words, as the dispatch kernel zeroes them.
  exchange_message remote_words{};
  /// Set to all bits (recv only) when the combine kernel did not launch (clear_combine_mark).
  exchange_message combines_done{};
};
exchange_plan plan_exchanges(const comm::session_view& v, const std::vector<std::size_t>& payload_row_bytes);

class remote_transport {
 public:
  virtual ~remote_transport() = default;
  [[nodiscard]] virtual cudaError_t exchange_dispatch(cudaStream_t stream, bool kernel_launched) const noexcept = 0;
  [[nodiscard]] virtual cudaError_t exchange_combine(cudaStream_t stream) const noexcept = 0;
  /// After exchange_combine when the combine kernel (which clears combine_mark) failed to launch.
  [[nodiscard]] virtual cudaError_t clear_combine_mark(cudaStream_t stream) const noexcept = 0;
};

/// The transport of a session with several domains; nullptr with one domain (nothing crosses).
std::shared_ptr<const remote_transport> make_remote_transport(const comm::ep_session& session);

}  // namespace epgraph::kernels::detail
