#include <climits>
#include <string>

#include "epgraph/comm/device_buffer.hpp"
#include "epgraph/comm/error.hpp"
#include "epgraph/kernels/expert_major.hpp"
#include "epgraph/kernels/ops.hpp"
#include "expert_major_params.hpp"
#include "launch.hpp"

namespace epgraph::kernels {

namespace detail {
struct expert_major_state {
  comm::device_buffer buffer;
  comm::device_buffer scan_scratch;
  std::size_t scan_bytes = 0;
  expert_major_params params{};
};
}  // namespace detail

namespace {

constexpr std::size_t kSharedLimit = 48 * 1024;  // the count and place kernels' dynamic shared memory

void check_weights_payload(const comm::ep_config& c, int index) {
  if (index < -1 || index >= static_cast<int>(c.payloads.size()))
    comm::throw_config_error("permute_args.weights_payload",
                             "is " + std::to_string(index) + " but the session has " +
                                 std::to_string(c.payloads.size()) + " payloads",
                             "pass the index of the fp32 [top_k] router weights payload, or -1");
  if (index >= 0 && c.payloads[static_cast<std::size_t>(index)].row_bytes != sizeof(float) * static_cast<std::size_t>(c.top_k))
    comm::throw_config_error("permute_args.weights_payload",
                             "names payload '" + c.payloads[static_cast<std::size_t>(index)].name + "' of " +
                                 std::to_string(c.payloads[static_cast<std::size_t>(index)].row_bytes) +
                                 " bytes per token, not top_k fp32 weights (" +
                                 std::to_string(sizeof(float) * static_cast<std::size_t>(c.top_k)) + ")");
}

// expert_major.cu, scratch_of: per warp of the count and place kernels, the chunk's ids and
// three ints per slot.
std::size_t shared_bytes(const comm::ep_config& c, const comm::expert_major_layout& l) {
  return detail::chunk_warps *
         (static_cast<std::size_t>(comm::expert_major_chunk_rows) * static_cast<std::size_t>(c.top_k) +
          3 * static_cast<std::size_t>(l.local_slots)) *
         sizeof(int);
}

}  // namespace

comm::expert_major_layout plan_permute(const comm::ep_config& c, const permute_args& args) {
  comm::validate(c);
  if (c.payloads.empty())
    comm::throw_config_error("ep_config.payloads", "is empty: there is nothing to permute",
                             "configure the payloads dispatch moves (the hidden rows at least)");
  if (args.spec.local_slots != 0 && args.spec.local_slots != c.local_slots())
    comm::throw_config_error("expert_major_spec.local_slots",
                             "is " + std::to_string(args.spec.local_slots) + ", not 0 or the session's " +
                                 std::to_string(c.local_slots()) + " expert slots per rank",
                             "pass 0: the session's slots (ep_config::expert_slots_per_rank)");
  check_weights_payload(c, args.weights_payload);
  if (args.spec.weights && args.weights_payload < 0)
    comm::throw_config_error("expert_major_spec.weights", "is set without permute_args.weights_payload",
                             "name the payload that carries the router weights");
  comm::expert_major_spec spec = args.spec;
  spec.local_slots = c.local_slots();
  const comm::expert_major_layout l = comm::plan_expert_major(c, spec);
  if (static_cast<std::size_t>(l.chunks) * static_cast<std::size_t>(l.local_slots) > static_cast<std::size_t>(INT_MAX))
    comm::throw_config_error("expert_major_spec",
                             "needs " + std::to_string(l.chunks) + " x " + std::to_string(l.local_slots) +
                                 " chunk counters, more than 2^31 - 1",
                             "lower max_tokens_per_rank or the experts per rank");
  if (shared_bytes(c, l) > kSharedLimit)
    comm::throw_config_error("ep_config.local_slots()",
                             "is " + std::to_string(l.local_slots) + ": the permute's counters need " +
                                 std::to_string(shared_bytes(c, l)) + " bytes of shared memory, over " +
                                 std::to_string(kSharedLimit),
                             "use fewer expert slots per rank (at most about 930 at top_k 8, 680 at top_k 32)");
  return l;
}

permute_op::permute_op(const comm::ep_session& session, const permute_args& args)
    : link_(session.link()) {
  const comm::ep_config& c = session.config();
  const comm::session_view& v = session.view();
  const comm::expert_major_layout l = plan_permute(c, args);
  auto state = std::make_shared<detail::expert_major_state>();
  detail::expert_major_params& p = state->params;
  p.v = v;
  p.layout = l;
  p.shared_bytes = static_cast<int>(shared_bytes(c, l));
  for (int i = 0; i < l.num_payloads; ++i) {
    p.row_bytes[i] = c.payloads[static_cast<std::size_t>(i)].row_bytes;
    p.vec_bytes[i] = static_cast<int>(natural_alignment(p.row_bytes[i]));
    const std::size_t segment_bytes = 32 * detail::copy_unroll * static_cast<std::size_t>(p.vec_bytes[i]);
    p.segments[i] = static_cast<int>((p.row_bytes[i] + segment_bytes - 1) / segment_bytes);
    p.row_segments += p.segments[i];
  }
  if (!l.copy_rows) p.row_segments = 1;  // a warp per token: origins, weights and receive indices
  EPG_CHECK_CUDA(detail::permute_copy_grid(p, detail::sm_count(), &grid_));
  state->buffer = comm::device_buffer(l.bytes);
  EPG_CHECK_CUDA(cudaMemset(state->buffer.get(), 0, l.bytes));
  p.buffer = state->buffer.as<char>();
  p.recv_weights =
      args.weights_payload >= 0 ? static_cast<const float*>(session.recv_payload(args.weights_payload)) : nullptr;
  if (!detail::inline_scan(l)) {  // else place sums the counts itself: no scan, no scratch
    EPG_CHECK_CUDA(detail::expert_major_scan_bytes(l.chunks * l.local_slots, &state->scan_bytes));
    state->scan_scratch = comm::device_buffer(state->scan_bytes);
  }
  view_.form = l.form;
  view_.local_slots = l.local_slots;
  view_.capacity = l.capacity;
  view_.rows = l.rows;
  if (l.copy_rows)
    for (int i = 0; i < l.num_payloads; ++i) view_.payloads.push_back(p.at<const void>(l.payloads[i]));
  view_.receive_rows = l.copy_rows ? nullptr : p.at<const std::int32_t>(l.receive_rows);
  view_.output = p.at<void>(l.output);
  view_.origins = p.at<const std::int32_t>(l.origins);
  view_.weights = l.weights.bytes ? p.at<const float>(l.weights) : nullptr;
  view_.counts = p.at<const std::int32_t>(l.counts);
  view_.demand = p.at<const std::int32_t>(l.demand);
  view_.dropped = p.at<const std::uint64_t>(l.dropped);
  view_.offsets = p.at<const std::int64_t>(l.offsets);
  state_ = std::move(state);
}

const comm::expert_major_layout& permute_op::layout() const noexcept { return state_->params.layout; }

std::uint64_t permute_op::read_dropped_rows() const {
  std::uint64_t dropped = 0;
  EPG_CHECK_CUDA(cudaDeviceSynchronize());
  EPG_CHECK_CUDA(cudaMemcpy(&dropped, state_->params.at<const void>(state_->params.layout.dropped), sizeof dropped,
                            cudaMemcpyDeviceToHost));
  return dropped;
}

cudaError_t permute_op::run(cudaStream_t stream) const noexcept {
  if (const cudaError_t st = link_.launch_status(); st != cudaSuccess) return st;
  return detail::launch_permute(state_->params, state_->scan_scratch.get(), state_->scan_bytes, grid_, stream);
}

unpermute_op::unpermute_op(const comm::ep_session& session, const permute_op& permute, bool weighted)
    : link_(session.link()), state_(permute.state_), weighted_(weighted) {
  const detail::expert_major_params& p = state_->params;
  if (p.v.window_local != session.view().window_local)
    comm::throw_config_error("unpermute_op", "was given a permute of another session",
                             "pass the permute_op planned on this session");
  if (weighted && p.recv_weights == nullptr)
    comm::throw_config_error("unpermute_op weighted", "needs the router weights, but the permute names no weights payload",
                             "set permute_args.weights_payload, or un-permute without weights");
  const std::size_t row_bytes = p.v.layout.combine_row_bytes;
  vectorized_ = row_bytes % 16 == 0 && p.layout.output.offset % 16 == 0 && p.v.layout.combine.offset % 16 == 0;
  EPG_CHECK_CUDA(detail::unpermute_grid(p, weighted, vectorized_, detail::sm_count(), &grid_));
}

cudaError_t unpermute_op::run(cudaStream_t stream) const noexcept {
  if (const cudaError_t st = link_.launch_status(); st != cudaSuccess) return st;
  return detail::launch_unpermute(state_->params, weighted_, vectorized_, grid_, stream);
}

}  // namespace epgraph::kernels
