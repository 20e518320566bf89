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
  const bool expert_major = parts.permute.has_value();
  if (expert_major != static_cast<bool>(parts.unpermute))
    comm::throw_config_error("step_parts.unpermute", expert_major ? "is missing beside a permute" : "is set without a permute",
                             "an expert-major stage needs both: the permute before it, the un-permute after it");
  const kernels::combine_precision precision = parts.combine_precision;
  const bool reduced = precision != kernels::combine_precision::exact;
  const char* name = precision == kernels::combine_precision::fp8    ? "fp8"
                     : precision == kernels::combine_precision::bf16 ? "bf16"
                                                                     : "not exact";
  if (reduced && expert_major)
    comm::throw_config_error("step_spec.combine.precision", std::string("is ") + name + " beside an expert-major stage",
                             "use the exact combine with expert_major (its un-permute writes combine_type rows)");
  if (reduced && parts.expert_output == parts.combine_region)
    comm::throw_config_error("step_spec.combine.precision",
                             std::string("is ") + name + " but the expert output is the combine region",
                             "give the expert stage a buffer of its own: prepare-combine reduces it into the region");
  step_plan plan;
  plan.prepare_combine = expert_major || parts.expert_output != parts.combine_region;
  plan.decision =
      expert_major ? "prepare-combine: the un-permute (the expert stage writes expert-major rows)"
      : precision == kernels::combine_precision::fp8
          ? "prepare-combine: inserted, quantizing to FP8 e4m3 with 1x128 scales (combine pulls FP8 rows)"
      : precision == kernels::combine_precision::bf16
          ? "prepare-combine: inserted, rounding fp32 to bf16 (combine pulls bf16 rows)"
      : plan.prepare_combine
          ? "prepare-combine: inserted (expert output lies outside the workspace combine region)"
          : "prepare-combine: skipped (expert output is the workspace combine region, zero copy)";
  parts.dispatch.collective = true;
  parts.combine.collective = true;
  plan.nodes.push_back(std::move(parts.dispatch));
  if (parts.summarize) plan.nodes.push_back(std::move(*parts.summarize));
  if (expert_major) plan.nodes.push_back(std::move(*parts.permute));
  plan.nodes.push_back(std::move(parts.experts));
  if (expert_major) plan.nodes.push_back(parts.unpermute());
  else if (plan.prepare_combine) plan.nodes.push_back(parts.prepare_combine());
  plan.nodes.push_back(std::move(parts.combine));
  return plan;
}

step_plan plan_step(const comm::ep_session& session, const step_spec& spec) {
  // Each agreed: every rank runs all three, so a failure anywhere throws everywhere.
  kernels::dispatch_op dispatch(session, spec.dispatch);
  kernels::combine_op combine(session, spec.combine);
  step_plan plan;
  session.agreed("plan_step", [&] {
    if (!spec.experts) comm::throw_config_error("step_spec.experts", "is empty", "pass the expert stage callable");
    if (spec.expert_major && spec.expert_output != nullptr)
      comm::throw_config_error("step_spec.expert_output", "is set beside expert_major",
                               "an expert-major stage writes the view's output rows: pass null");
    if (spec.expert_major && spec.unpermute_weighted && spec.expert_major->weights_payload < 0)
      comm::throw_config_error("step_spec.unpermute_weighted",
                               "is true but expert_major.weights_payload names no router weights payload",
                               "set expert_major.weights_payload to the fp32 [top_k] weights payload, or "
                               "unpermute_weighted = false if the expert stage applies the weights");
    if (!spec.expert_major && spec.expert_output == nullptr)
      comm::throw_config_error("step_spec.expert_output", "is null",
                               "pass session.combine_region() for zero copy, or a [ep][max_tokens][hidden] buffer");
    if (spec.combine.num_tokens && spec.combine.num_tokens != spec.dispatch.num_tokens)
      comm::throw_config_error("step_spec.combine.num_tokens", "is not dispatch.num_tokens",
                               "combine uses the token count dispatch recorded: pass the same scalar, or null");
    step_parts parts;
    parts.expert_output = spec.expert_output;
    parts.combine_region = session.combine_region();
    parts.dispatch = {"dispatch", [dispatch](cudaStream_t s) { return dispatch.run(s); }};
    if (spec.summarize) {
      kernels::summarize_op summarize(session, spec.sanitize_unused_slots);
      parts.summarize = node{"summarize", [summarize](cudaStream_t s) { return summarize.run(s); }};
    }
    expert_stage_io io{session.recv_counts(), session.recv_topk_ids(), {}, session.local_expert_counts(),
                       spec.expert_output, &session.config(), session.rank(), std::nullopt,
                       session.placement_table()};
    for (int i = 0; i < static_cast<int>(session.config().payloads.size()); ++i)
      io.recv_payloads.push_back(session.recv_payload(i));
    if (spec.expert_major) {
      const kernels::permute_op permute(session, *spec.expert_major);
      const kernels::unpermute_op unpermute(session, permute, spec.unpermute_weighted);
      io.expert_major = permute.view();
      io.output = permute.view().output;
      parts.permute = node{"permute", [permute](cudaStream_t s) { return permute.run(s); }};
      parts.unpermute = [unpermute, weighted = spec.unpermute_weighted] {
        return node{weighted ? "un-permute (weighted)" : "un-permute",
                    [unpermute](cudaStream_t s) { return unpermute.run(s); }};
      };
    }
    parts.experts = {"expert stage", [io, experts = spec.experts](cudaStream_t s) { return experts(io, s); }};
    parts.combine_precision = spec.combine.precision;
    parts.prepare_combine = [&session, output = spec.expert_output, precision = spec.combine.precision] {
      kernels::prepare_combine_op prepare(session, output, precision);
      return node{precision == kernels::combine_precision::fp8    ? "prepare-combine (quantize to fp8)"
                  : precision == kernels::combine_precision::bf16 ? "prepare-combine (round to bf16)"
                                                                  : "prepare-combine",
                  [prepare](cudaStream_t s) { return prepare.run(s); }};
    };
    parts.combine = {"combine", [combine](cudaStream_t s) { return combine.run(s); }};
    plan = schedule(std::move(parts));
    plan.session = session.link();
    kernels::stage_failure_op marker(session);
    plan.failure_marker = [marker](cudaStream_t s, int position) { return marker.run(s, position); };
    if (spec.log) spec.log(plan.decision);
  });
  return plan;
}

namespace {
// A user callable must not throw across the launch path.
template <class F>
cudaError_t call(const F& f) noexcept {
  try {
    return f();
  } catch (...) {
    return cudaErrorUnknown;
  }
}
}  // namespace

cudaError_t enqueue(const step_plan& plan, cudaStream_t stream, std::string* failed_node) noexcept {
  cudaError_t first = cudaSuccess;
  int failed = -1;
  bool marked = false;
  for (int i = 0; i < static_cast<int>(plan.nodes.size()); ++i) {
    const node& n = plan.nodes[i];
    if (failed >= 0) {
      if (!n.collective) continue;  // local work after a failure is pointless
      if (!marked && plan.failure_marker) (void)call([&] { return plan.failure_marker(stream, failed); });
      marked = true;
    }
    const cudaError_t st = call([&] { return n.enqueue(stream); });
    if (st != cudaSuccess && failed < 0) {
      first = st;
      failed = i;
      if (failed_node) *failed_node = n.name;
    }
  }
  return first;
}

step_graph::step_graph(step_plan plan, stream_ref capture_stream) : plan_(std::move(plan)) {
  plan_.session.agreed("step_graph capture", [&] {
    capture_scope capture(capture_stream);
    std::string failed;
    const cudaError_t st = enqueue(plan_, capture_stream.get(), &failed);
    if (st != cudaSuccess) {
      throw comm::error(comm::error_domain::cuda, "step_graph capture of node '" + failed + "'",
                        static_cast<int>(st), cudaGetErrorString(st),
                        "a node must only enqueue capturable work (no allocation or synchronization)");
    }
    graph_ = capture.end();
    exec_ = graph_.instantiate();
  });
}

cudaError_t step_graph::replay(stream_ref s) const noexcept {
  if (const cudaError_t st = plan_.session.launch_status(); st != cudaSuccess) return st;
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
