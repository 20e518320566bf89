#pragma once
// A MoE step as a list of nodes, the scheduler that orders them, and the captured step graph.
//
//   dispatch -> [summarize] -> expert stage -> [prepare-combine] -> combine
//   dispatch -> [summarize] -> permute -> expert stage -> un-permute -> combine   (expert-major)
//
// The scheduler decides whether prepare-combine is needed: exactly when the expert output is
// not the workspace combine region (zero copy otherwise); with a reduced-precision combine
// (step_spec::combine.precision fp8 or bf16) it always is, and reduces the rows; with an expert-major stage
// (step_spec::expert_major) the weighted un-permute is the prepare-combine. The decision is
// visible in step_plan::explain().
//
//                        collective?                 capture-safe?  throws?
//   plan_step            yes (agrees: every rank     no             yes, on every rank together
//                        throws together)
//   step_graph(...)      yes (agrees on the capture) no             yes, on every rank together
//   enqueue / replay     yes, in effect              yes            never (returns the status)
//
// The collective sequence survives a failing node: enqueue() records the failure on the
// device, skips the local nodes after it and still launches the collective ones, which then
// only tell the peers to stop. Every rank then gets the error from check_faults() instead of
// its peers waiting for a combine that never comes.

#include <cuda_runtime_api.h>

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "epgraph/comm/ep_session.hpp"
#include "epgraph/graph/cuda_raii.hpp"
#include "epgraph/kernels/expert_major.hpp"
#include "epgraph/kernels/ops.hpp"

namespace epgraph::graph {

/// Anything that can enqueue itself on a stream (and so be captured when the stream is).
struct node {
  std::string name;
  std::function<cudaError_t(cudaStream_t)> enqueue;
  bool collective = false;  ///< every rank must launch it, also after an earlier node failed
};

/// What the runtime's expert stage sees: this rank's receive buffers (valid from the end of
/// dispatch until this rank's combine starts: peers may overwrite them from then on) and the
/// buffer it must write, [ep][max_tokens][hidden]; with an expert-major stage, the
/// expert-major view instead, whose output rows it writes (output is then view.output).
struct expert_stage_io {
  const std::int32_t* recv_counts;        ///< [ep] tokens received from each source
  const std::int32_t* recv_topk_ids;      ///< [ep][max_tokens][top_k]
  std::vector<const void*> recv_payloads; ///< per payload, [ep][max_tokens][row_bytes]
  const std::int32_t* expert_counts;      ///< [local_slots] (when summarize is on)
  void* output;                           ///< expert output rows, combine_type
  const comm::ep_config* config;
  int rank;
  std::optional<kernels::expert_major_view> expert_major;  ///< set for an expert-major stage
  /// With a placement table (ep_config::expert_slots_per_rank > 0) the received top-k ids are
  /// physical: which logical expert each serves, and which slot serves which expert, are here
  /// (device pointers; all null by the contiguous rule).
  comm::placement_ref placement;
};
using expert_stage = std::function<cudaError_t(const expert_stage_io&, cudaStream_t)>;

struct step_spec {
  kernels::dispatch_args dispatch;
  kernels::combine_args combine;  ///< combine.num_tokens: null, or dispatch.num_tokens
  expert_stage experts;
  void* expert_output = nullptr;  ///< session.combine_region() for zero copy, else a buffer of your own;
                                  ///< null with expert_major (the view's output is the stage's)
  /// Set: the expert stage reads and writes expert-major rows (epgraph/kernels/expert_major.hpp);
  /// the permute and the un-permute (weighted by the permute's weights payload when
  /// unpermute_weighted) are inserted around it.
  std::optional<kernels::permute_args> expert_major;
  bool unpermute_weighted = true;
  bool summarize = true;          ///< per-local-expert counts before the expert stage
  bool sanitize_unused_slots = false;
  std::function<void(const std::string&)> log;  ///< receives the scheduler's decision
};

struct step_plan {
  std::vector<node> nodes;
  bool prepare_combine = false;
  std::string decision;  ///< one line: why prepare-combine is in or out
  comm::session_link session;  ///< for agreement and launch checks (unlinked in host-only fakes)
  /// Records on the device that node `position` failed on this rank (enqueue calls it once,
  /// before the first collective node that follows a failure).
  std::function<cudaError_t(cudaStream_t, int position)> failure_marker;
  /// Dry-run listing: the decision and the nodes in order.
  std::string explain() const;
};

/// The parts a step is made of, before ordering. Pure data: the host-only tests build
/// recording fakes of these.
struct step_parts {
  node dispatch;
  std::optional<node> summarize;
  node experts;
  node combine;
  /// Where the expert stage writes, and the session's combine region.
  const void* expert_output = nullptr;
  const void* combine_region = nullptr;
  /// Builds the prepare-combine node; called only when the scheduler inserts it.
  std::function<node()> prepare_combine;
  /// Expert-major stage: the permute into expert-major
  /// rows, after dispatch (and summarize), and the weighted un-permute that brings the expert
  /// stage's expert-major output back into the combine region, which then takes the place of
  /// prepare-combine. Both or neither.
  std::optional<node> permute;
  std::function<node()> unpermute;
  /// What combine pulls (combine_args::precision). fp8 or bf16: prepare-combine reduces the
  /// rows, so it is always inserted; a zero-copy expert output or an expert-major stage is a
  /// config error.
  kernels::combine_precision combine_precision = kernels::combine_precision::exact;
};

/// Orders the parts and decides: prepare-combine exactly when expert_output != combine_region;
/// with an expert-major stage, the un-permute always (the expert output is expert-major rows,
/// never the combine region). Marks dispatch and combine collective. Throws a config error for
/// a permute without an un-permute or the reverse.
step_plan schedule(step_parts parts);

/// Builds real nodes for a session (plans every op). Collective: a failure on any rank throws
/// on every rank.
step_plan plan_step(const comm::ep_session& session, const step_spec& spec);

/// Enqueues every node in order. After a failing node it skips the local nodes, calls the
/// plan's failure_marker once and still enqueues the collective nodes. Returns the first
/// failure (and names its node via failed_node).
cudaError_t enqueue(const step_plan& plan, cudaStream_t stream, std::string* failed_node = nullptr) noexcept;

/// A step captured once and replayed for every batch (token count and routing come from
/// device memory). Construction captures on `capture_stream` and agrees across ranks that
/// every capture succeeded. The graph must not outlive its session: replay() then returns
/// cudaErrorInvalidResourceHandle instead of launching.
class step_graph {
 public:
  step_graph(step_plan plan, stream_ref capture_stream);
  /// Launches the whole step. Collective in effect: every rank must replay the same
  /// sequence. Capture-safe: if `s` is being captured (a runtime capturing its own graph),
  /// the step is spliced into that capture as a child-graph node instead of launched.
  /// Returns cudaErrorNotPermitted once the session failed (check_faults says why).
  [[nodiscard]] cudaError_t replay(stream_ref s) const noexcept;
  /// The captured graph, for embedding as a child graph node in a caller's graph.
  cudaGraph_t get() const noexcept { return graph_.get(); }
  const step_plan& plan() const noexcept { return plan_; }

 private:
  step_plan plan_;
  graph graph_;
  graph_exec exec_;
};

}  // namespace epgraph::graph
