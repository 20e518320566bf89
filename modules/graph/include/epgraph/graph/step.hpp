#pragma once
// A MoE step as a list of nodes, the scheduler that orders them, and the captured step graph.
//
//   dispatch -> [summarize] -> expert stage -> [prepare-combine] -> combine
//
// The scheduler inserts prepare-combine only when the expert output is not the workspace
// combine region (zero copy otherwise); the decision is visible in step_plan::explain().
// Planning throws on bad input and does not touch the GPU; enqueue/replay never throw and
// are capture-safe.

#include <cuda_runtime_api.h>

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "epgraph/comm/ep_session.hpp"
#include "epgraph/graph/cuda_raii.hpp"
#include "epgraph/kernels/ops.hpp"

namespace epgraph::graph {

/// Anything that can enqueue itself on a stream (and so be captured when the stream is).
struct node {
  std::string name;
  std::function<cudaError_t(cudaStream_t)> enqueue;
};

/// What the runtime's expert stage sees: this rank's receive buffers (valid between
/// dispatch and the next dispatch) and the buffer it must write, [ep][max_tokens][hidden].
struct expert_stage_io {
  const std::int32_t* recv_counts;        ///< [ep] tokens received from each source
  const std::int32_t* recv_topk_ids;      ///< [ep][max_tokens][top_k]
  std::vector<const void*> recv_payloads; ///< per payload, [ep][max_tokens][row_bytes]
  const std::int32_t* expert_counts;      ///< [experts_per_rank] (when summarize is on)
  void* output;                           ///< expert output rows, combine_type
  const comm::ep_config* config;
  int rank;
};
using expert_stage = std::function<cudaError_t(const expert_stage_io&, cudaStream_t)>;

struct step_spec {
  kernels::dispatch_args dispatch;
  kernels::combine_args combine;
  expert_stage experts;
  void* expert_output = nullptr;  ///< session.combine_region() for zero copy, else any buffer
  bool summarize = true;          ///< per-local-expert counts before the expert stage
  bool sanitize_unused_slots = false;
  std::function<void(const std::string&)> log;  ///< receives the scheduler's decision
};

struct step_plan {
  std::vector<node> nodes;
  bool prepare_combine = false;
  std::string decision;  ///< one line: why prepare-combine is in or out
  /// Dry-run listing: the decision and the nodes in order.
  std::string explain() const;
};

/// The parts a step is made of, before ordering. Pure data: the host-only tests build
/// recording fakes of these.
struct step_parts {
  node dispatch;
  std::optional<node> summarize;
  node experts;
  node prepare_combine;
  node combine;
  bool expert_output_in_workspace = false;
};

/// Orders the parts; prepare-combine only when the expert output is outside the workspace.
step_plan schedule(step_parts parts);

/// Builds real nodes for a session (plans every op: throws on bad input).
step_plan plan_step(const comm::ep_session& session, const step_spec& spec);

/// Enqueues every node in order; returns the first failure (and its node via failed_node).
cudaError_t enqueue(const step_plan& plan, cudaStream_t stream, std::string* failed_node = nullptr) noexcept;

/// A step captured once and replayed for every batch (token count and routing come from
/// device memory). Construction captures on `capture_stream` (not collective: nothing runs).
class step_graph {
 public:
  step_graph(step_plan plan, stream_ref capture_stream);
  /// Launches the whole step. Collective in effect: every rank must replay the same
  /// sequence. Capture-safe: if `s` is being captured (a runtime capturing its own graph),
  /// the step is spliced into that capture as a child-graph node instead of launched.
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
