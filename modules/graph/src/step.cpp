#include "epgraph/graph/step.hpp"

#include <sstream>

#include "epgraph/comm/error.hpp"

namespace epgraph::graph {

std::string step_plan::explain() const {
  std::ostringstream out;
  out << decision << "\n";
  for (std::size_t i = 0; i < nodes.size(); ++i) out << "  " << i << ". " << nodes[i].name << "\n";
  return out.str();
}

step_plan schedule(step_parts parts) {
  step_plan plan;
  plan.prepare_combine = !parts.expert_output_in_workspace;
  plan.decision = plan.prepare_combine
                      ? "prepare-combine: inserted (expert output lies outside the workspace combine region)"
                      : "prepare-combine: skipped (expert output is the workspace combine region, zero copy)";
  plan.nodes.push_back(std::move(parts.dispatch));
  if (parts.summarize) plan.nodes.push_back(std::move(*parts.summarize));
  plan.nodes.push_back(std::move(parts.experts));
  if (plan.prepare_combine) plan.nodes.push_back(std::move(parts.prepare_combine));
  plan.nodes.push_back(std::move(parts.combine));
  return plan;
}

step_plan plan_step(const comm::ep_session& session, const step_spec& spec) {
  if (!spec.experts) comm::throw_config_error("step_spec.experts", "is empty", "pass the expert stage callable");
  if (spec.expert_output == nullptr)
    comm::throw_config_error("step_spec.expert_output", "is null",
                             "pass session.combine_region() for zero copy, or a [ep][max_tokens][hidden] buffer");
  const bool zero_copy = spec.expert_output == session.combine_region();

  kernels::dispatch_op dispatch(session, spec.dispatch);
  kernels::combine_op combine(session, spec.combine);
  step_parts parts;
  parts.expert_output_in_workspace = zero_copy;
  parts.dispatch = {"dispatch", [dispatch](cudaStream_t s) { return dispatch.run(s); }};
  if (spec.summarize) {
    kernels::summarize_op summarize(session, spec.sanitize_unused_slots);
    parts.summarize = node{"summarize", [summarize](cudaStream_t s) { return summarize.run(s); }};
  }
  expert_stage_io io{session.recv_counts(), session.recv_topk_ids(), {}, session.local_expert_counts(),
                     spec.expert_output, &session.config(), session.rank()};
  for (int i = 0; i < static_cast<int>(session.config().payloads.size()); ++i)
    io.recv_payloads.push_back(session.recv_payload(i));
  parts.experts = {"expert stage", [io, experts = spec.experts](cudaStream_t s) { return experts(io, s); }};
  if (!zero_copy) {
    kernels::prepare_combine_op prepare(session, spec.expert_output);
    parts.prepare_combine = {"prepare-combine", [prepare](cudaStream_t s) { return prepare.run(s); }};
  }
  parts.combine = {"combine", [combine](cudaStream_t s) { return combine.run(s); }};

  step_plan plan = schedule(std::move(parts));
  if (spec.log) spec.log(plan.decision);
  return plan;
}

cudaError_t enqueue(const step_plan& plan, cudaStream_t stream, std::string* failed_node) noexcept {
  for (const node& n : plan.nodes) {
    cudaError_t st = cudaErrorUnknown;
    try {
      st = n.enqueue(stream);
    } catch (...) {  // a user callable must not throw across the launch path
      st = cudaErrorUnknown;
    }
    if (st != cudaSuccess) {
      if (failed_node) *failed_node = n.name;
      return st;
    }
  }
  return cudaSuccess;
}

step_graph::step_graph(step_plan plan, stream_ref capture_stream) : plan_(std::move(plan)) {
  capture_scope capture(capture_stream);
  std::string failed;
  cudaError_t st = enqueue(plan_, capture_stream.get(), &failed);
  if (st != cudaSuccess) {
    throw comm::error(comm::error_domain::cuda, "step_graph capture of node '" + failed + "'",
                      static_cast<int>(st), cudaGetErrorString(st),
                      "a node must only enqueue capturable work (no allocation or synchronization)");
  }
  graph_ = capture.end();
  exec_ = graph_.instantiate();
}

cudaError_t step_graph::replay(stream_ref s) const noexcept {
  cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
  cudaGraph_t capturing = nullptr;
  const cudaGraphNode_t* deps = nullptr;
  std::size_t num_deps = 0;
  cudaError_t st = cudaStreamGetCaptureInfo(s.get(), &status, nullptr, &capturing, &deps, nullptr, &num_deps);
  if (st != cudaSuccess) return st;
  if (status != cudaStreamCaptureStatusActive) return exec_.launch(s);
  // A graph cannot be launched into a capture; add it as a child node after the capture's
  // current frontier and make that node the new frontier.
  cudaGraphNode_t child = nullptr;
  st = cudaGraphAddChildGraphNode(&child, capturing, deps, num_deps, graph_.get());
  if (st != cudaSuccess) return st;
  return cudaStreamUpdateCaptureDependencies(s.get(), &child, nullptr, 1, cudaStreamSetCaptureDependencies);
}

}  // namespace epgraph::graph
