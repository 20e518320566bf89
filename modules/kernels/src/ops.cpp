#include "epgraph/kernels/ops.hpp"

#include <cstdint>
#include <string>

#include "epgraph/comm/error.hpp"
#include "launch.hpp"

namespace epgraph::kernels {

std::size_t natural_alignment(std::size_t row_bytes) noexcept {
  for (std::size_t w : {16u, 8u, 4u, 2u})
    if (row_bytes % w == 0) return w;
  return 1;
}

namespace {
bool aligned(const void* p, std::size_t a) { return reinterpret_cast<std::uintptr_t>(p) % a == 0; }

// Grid of the local (non-collective) kernels: two CTAs per SM of the current device.
int local_grid() {
  int device = 0, sms = 0;
  EPG_CHECK_CUDA(cudaGetDevice(&device));
  EPG_CHECK_CUDA(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  return 2 * sms;
}

void require_device_pointer(const void* p, const std::string& field, std::size_t alignment) {
  if (p == nullptr) comm::throw_config_error(field, "is null", "pass a device pointer");
  if (!aligned(p, alignment))
    comm::throw_config_error(field, "is not aligned to " + std::to_string(alignment) + " bytes",
                             "rows are copied in their natural vector width; allocate with cudaMalloc or align "
                             "the row start");
}
}  // namespace

dispatch_op::dispatch_op(const comm::ep_session& session, dispatch_args args) : session_(&session) {
  const auto& c = session.config();
  require_device_pointer(args.num_tokens, "dispatch_args.num_tokens", alignof(std::int32_t));
  require_device_pointer(args.topk_ids, "dispatch_args.topk_ids", alignof(std::int32_t));
  if (args.payloads.size() != c.payloads.size())
    comm::throw_config_error("dispatch_args.payloads",
                             "has " + std::to_string(args.payloads.size()) + " entries but the session was "
                                 "configured with " + std::to_string(c.payloads.size()));
  params_.v = session.view();
  params_.num_tokens = args.num_tokens;
  params_.topk_ids = args.topk_ids;

  // Copy 0: the top-k ids travel with every token (the receiver needs its routing).
  const std::size_t id_row = sizeof(std::int32_t) * static_cast<std::size_t>(c.top_k);
  params_.copies[0] = {reinterpret_cast<const char*>(args.topk_ids), id_row, session.layout().topk_ids.offset,
                       static_cast<int>(natural_alignment(id_row))};
  if (!aligned(args.topk_ids, natural_alignment(id_row))) params_.copies[0].vec_bytes = alignof(std::int32_t);
  for (std::size_t i = 0; i < args.payloads.size(); ++i) {
    const auto& in = args.payloads[i];
    const std::string field = "dispatch_args.payloads[" + std::to_string(i) + "]";
    if (in.row_bytes != c.payloads[i].row_bytes)
      comm::throw_config_error(field + ".row_bytes",
                               "is " + std::to_string(in.row_bytes) + " but the session's payload '" +
                                   c.payloads[i].name + "' has " + std::to_string(c.payloads[i].row_bytes));
    const std::size_t vec = natural_alignment(in.row_bytes);
    require_device_pointer(in.data, field + ".data", vec);
    params_.copies[i + 1] = {static_cast<const char*>(in.data), in.row_bytes, session.layout().payloads[i].offset,
                             static_cast<int>(vec)};
  }
  params_.num_copies = static_cast<int>(args.payloads.size()) + 1;
}

cudaError_t dispatch_op::run(cudaStream_t stream) const noexcept {
  return detail::launch_dispatch(session_->dev_comm(), params_, stream);
}

summarize_op::summarize_op(const comm::ep_session& session, bool sanitize_unused_slots)
    : view_(session.view()), sanitize_(sanitize_unused_slots), grid_(local_grid()) {}

cudaError_t summarize_op::run(cudaStream_t stream) const noexcept {
  return detail::launch_summarize(view_, sanitize_, grid_, stream);
}

prepare_combine_op::prepare_combine_op(const comm::ep_session& session, const void* expert_output)
    : view_(session.view()),
      source_(expert_output),
      grid_(local_grid()),
      vectorized_(view_.combine_row_bytes % 16 == 0) {
  if (expert_output == session.combine_region())
    comm::throw_config_error("prepare_combine.expert_output", "is the workspace combine region already",
                             "no prepare-combine is needed for a zero-copy expert output: leave it out");
  require_device_pointer(expert_output, "prepare_combine.expert_output",
                         vectorized_ ? 16 : comm::element_size(view_.combine_type));
}

cudaError_t prepare_combine_op::run(cudaStream_t stream) const noexcept {
  return detail::launch_prepare_combine(view_, source_, vectorized_, grid_, stream);
}

combine_op::combine_op(const comm::ep_session& session, combine_args args) : session_(&session) {
  require_device_pointer(args.num_tokens, "combine_args.num_tokens", alignof(std::int32_t));
  require_device_pointer(args.output, "combine_args.output", comm::element_size(args.output_type));
  params_.v = session.view();
  params_.num_tokens = args.num_tokens;
  params_.output = args.output;
  params_.output_type = args.output_type;
  params_.vectorized = session.config().hidden % 8 == 0 && aligned(args.output, 16) &&
                       (session.layout().combine.offset % 16 == 0);
}

cudaError_t combine_op::run(cudaStream_t stream) const noexcept {
  return detail::launch_combine(session_->dev_comm(), params_, stream);
}

}  // namespace epgraph::kernels
