#include "epgraph/kernels/ops.hpp"

#include <cstdint>
#include <string>

#include "epgraph/comm/error.hpp"
#include "device/push_items.hpp"
#include "launch.hpp"
#include "remote_transport.hpp"

namespace epgraph::kernels {

std::size_t natural_alignment(std::size_t row_bytes) noexcept {
  for (std::size_t w : {16u, 8u, 4u, 2u})
    if (row_bytes % w == 0) return w;
  return 1;
}

int detail::sm_count() {
  int device = 0, sms = 0;
  EPG_CHECK_CUDA(cudaGetDevice(&device));
  EPG_CHECK_CUDA(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  return sms;
}

int detail::local_grid() { return 2 * sm_count(); }

namespace {
using detail::local_grid;
using detail::sm_count;

bool aligned(const void* p, std::size_t a) { return reinterpret_cast<std::uintptr_t>(p) % a == 0; }

void require_device_pointer(const void* p, const std::string& field, std::size_t alignment) {
  if (p == nullptr) comm::throw_config_error(field, "is null", "pass a device pointer");
  if (!aligned(p, alignment))
    comm::throw_config_error(field, "is not aligned to " + std::to_string(alignment) + " bytes",
                             "rows are copied in their natural vector width; allocate with cudaMalloc or align "
                             "the row start");
}

// Buffers the kernels write or read as the caller's must not lie in the session's own memory:
// peers write the window, the kernels own the local state.
void require_outside_session(const void* p, std::size_t bytes, const comm::session_view& v, const std::string& field,
                             const char* hint = "pass a buffer of your own (peers and the kernels write the workspace)") {
  const auto begin = reinterpret_cast<std::uintptr_t>(p), end = begin + bytes;
  auto overlaps = [&](const char* base, std::size_t size) {
    const auto b = reinterpret_cast<std::uintptr_t>(base);
    return begin < b + size && b < end;
  };
  if (overlaps(v.window_local, v.layout.window_bytes) || overlaps(v.local, v.layout.local_bytes))
    comm::throw_config_error(field, "overlaps the session's workspace", hint);
}

// Every CTA of a collective launch must be resident at once (the look-back and the barriers
// wait for each other). The kernels are compiled with __launch_bounds__(max_threads_per_cta, 1):
// one CTA of up to that many threads always fits on an SM, so a launch fits when its block is
// within the compiled limit and the grid within the SM count.
void require_coresident(cudaError_t queried, const cudaFuncAttributes& a, const comm::session_view& v, const char* op) {
  EPG_CHECK_CUDA(queried);
  if (v.threads_per_cta > a.maxThreadsPerBlock)
    comm::throw_config_error("threads_per_cta",
                             "is " + std::to_string(v.threads_per_cta) + " but the " + op + " kernel takes at most " +
                                 std::to_string(a.maxThreadsPerBlock),
                             "lower threads_per_cta");
  const int sms = sm_count();
  if (v.num_ctas > sms)
    comm::throw_config_error("num_ctas",
                             "is " + std::to_string(v.num_ctas) + " but this GPU has " + std::to_string(sms) +
                                 " SMs: the " + op + " CTAs would not all be resident at once",
                             "use num_ctas <= SM count");
}

// A quantizing dispatch's inputs (fp8_dispatch): two distinct payloads of matching sizes, their
// entries left empty, bf16 rows that vectorize.
void check_quantize(const fp8_dispatch& q, const dispatch_args& args, const comm::ep_config& c,
                    const comm::session_view& v) {
  const int n = static_cast<int>(c.payloads.size());
  for (const auto& [index, field] : {std::pair{q.codes_payload, "codes_payload"}, std::pair{q.scales_payload, "scales_payload"}})
    if (index < 0 || index >= n)
      comm::throw_config_error(std::string("dispatch_args.quantize.") + field,
                               "is " + std::to_string(index) + " but the session has " + std::to_string(n) + " payloads",
                               "name the session payloads that receive the codes and the scales");
  if (q.codes_payload == q.scales_payload)
    comm::throw_config_error("dispatch_args.quantize.scales_payload", "is the codes payload too",
                             "configure one payload for the codes and one for the scales");
  if (q.scales != fp8::scale_format::fp32 && q.scales != fp8::scale_format::ue8m0)
    comm::throw_config_error("dispatch_args.quantize.scales", "is " + std::to_string(static_cast<int>(q.scales)),
                             "use fp8::scale_format::fp32 or ue8m0");
  const std::size_t hidden = c.payloads[q.codes_payload].row_bytes;
  if (hidden % 8 != 0)
    comm::throw_config_error("payloads[" + std::to_string(q.codes_payload) + "].row_bytes",
                             "is " + std::to_string(hidden) + ": quantized rows need a multiple of 8 elements",
                             "pad the hidden size to a multiple of 8 (a last block of 128 may be partial)");
  const std::size_t blocks = static_cast<std::size_t>(fp8::blocks_of(static_cast<int>(hidden)));
  const std::size_t scale_bytes = blocks * (q.scales == fp8::scale_format::ue8m0 ? 1 : sizeof(float));
  if (c.payloads[q.scales_payload].row_bytes != scale_bytes)
    comm::throw_config_error("payloads[" + std::to_string(q.scales_payload) + "].row_bytes",
                             "is " + std::to_string(c.payloads[q.scales_payload].row_bytes) + " but " +
                                 std::to_string(blocks) + " blocks of " + std::to_string(hidden) + " elements need " +
                                 std::to_string(scale_bytes) + " bytes of " +
                                 (q.scales == fp8::scale_format::ue8m0 ? "UE8M0" : "fp32") + " scales",
                             "size the scales payload to blocks_of(hidden) x the scale's bytes");
  for (int index : {q.codes_payload, q.scales_payload})
    if (args.payloads[static_cast<std::size_t>(index)].data != nullptr)
      comm::throw_config_error("dispatch_args.payloads[" + std::to_string(index) + "].data",
                               "is set but the quantizing dispatch writes that payload",
                               "leave it null and pass the bf16 rows as dispatch_args.quantize.rows");
  require_device_pointer(q.rows, "dispatch_args.quantize.rows", 16);
  require_outside_session(q.rows, static_cast<std::size_t>(v.max_tokens) * hidden * 2, v,
                          "dispatch_args.quantize.rows");
}

std::string precision_name(combine_precision precision) {
  switch (precision) {
    case combine_precision::exact: return "exact";
    case combine_precision::fp8: return "fp8";
    case combine_precision::bf16: return "bf16";
  }
  return std::to_string(static_cast<int>(precision));
}

// What a reduced-precision combine needs (combine_precision): the FP8 quantizer reads bf16
// rows, 16 codes per lane step keep the codes and the scales behind them aligned; the bf16
// rounding reads fp32 rows 8 elements per lane step.
void check_combine_precision(combine_precision precision, const comm::session_view& v, const std::string& field) {
  if (precision == combine_precision::exact) return;
  if (precision != combine_precision::fp8 && precision != combine_precision::bf16)
    comm::throw_config_error(field, "is " + precision_name(precision), "use exact, fp8 or bf16");
  const bool fp8 = precision == combine_precision::fp8;
  const comm::element_type needs = fp8 ? comm::element_type::bf16 : comm::element_type::fp32;
  if (v.combine_type != needs)
    comm::throw_config_error(field, "is " + precision_name(precision) + " but the session's combine_type is " +
                                        std::string(comm::to_string(v.combine_type)),
                             fp8 ? "an FP8 combine quantizes bf16 expert output: use combine_type bf16"
                                 : "a bf16 combine rounds fp32 expert output: use combine_type fp32 (a bf16 "
                                   "combine_type is already bf16: use exact)");
  if (v.hidden % (fp8 ? 16 : 8) != 0)
    comm::throw_config_error(field, "is " + precision_name(precision) + " but hidden is " + std::to_string(v.hidden),
                             fp8 ? "an FP8 combine needs hidden % 16 == 0" : "a bf16 combine needs hidden % 8 == 0");
}

}  // namespace

dispatch_op::dispatch_op(const comm::ep_session& session, dispatch_args args) : link_(session.link()) {
  session.agreed("dispatch_op planning", [&] {
    const auto& c = session.config();
    const comm::session_view& v = session.view();
    require_device_pointer(args.num_tokens, "dispatch_args.num_tokens", alignof(std::int32_t));
    require_device_pointer(args.topk_ids, "dispatch_args.topk_ids", alignof(std::int32_t));
    // Peers push into this rank's window during the dispatch: a source there (a received row
    // forwarded to the next layer, say) would change under the copy.
    const auto max_tokens = static_cast<std::size_t>(v.max_tokens);
    require_outside_session(args.num_tokens, sizeof(std::int32_t), v, "dispatch_args.num_tokens");
    require_outside_session(args.topk_ids, max_tokens * c.top_k * sizeof(std::int32_t), v, "dispatch_args.topk_ids");
    if (args.payloads.size() != c.payloads.size())
      comm::throw_config_error("dispatch_args.payloads",
                               "has " + std::to_string(args.payloads.size()) + " entries but the session was "
                                   "configured with " + std::to_string(c.payloads.size()));
    cudaFuncAttributes attributes{};
    require_coresident(detail::dispatch_attributes(&attributes), attributes, v, "dispatch");
    params_.v = v;
    params_.num_tokens = args.num_tokens;
    params_.topk_ids = args.topk_ids;
    // Copy 0: the top-k ids travel with every token (the receiver needs its routing).
    const std::size_t id_row = sizeof(std::int32_t) * static_cast<std::size_t>(c.top_k);
    params_.copies[0] = {reinterpret_cast<const char*>(args.topk_ids), id_row, v.layout.topk_ids,
                         v.layout.staged_topk_ids, static_cast<int>(natural_alignment(id_row))};
    // Misaligned ids, or a placement table (the ids are translated one by one): int32 words.
    if (!aligned(args.topk_ids, natural_alignment(id_row)) || v.placed) params_.copies[0].vec_bytes = alignof(std::int32_t);
    const fp8_dispatch* quantize = args.quantize ? &*args.quantize : nullptr;
    if (quantize) check_quantize(*quantize, args, c, v);
    int copies = 1;
    for (std::size_t i = 0; i < args.payloads.size(); ++i) {
      const auto& in = args.payloads[i];
      const std::string field = "dispatch_args.payloads[" + std::to_string(i) + "]";
      if (quantize && static_cast<int>(i) == quantize->scales_payload) continue;  // written by the codes' copy
      if (quantize && static_cast<int>(i) == quantize->codes_payload) {
        const int scales = quantize->scales_payload;
        // 16 codes per lane when every codes row starts 16-byte aligned, else 8.
        const std::size_t hidden = c.payloads[i].row_bytes;
        copy_spec q{static_cast<const char*>(quantize->rows), hidden, v.layout.payloads[i],
                    v.layout.staged_payloads[i], hidden % 16 == 0 ? 16 : 8};
        q.quantize = true;
        q.scales = quantize->scales;
        q.scales_dst = v.layout.payloads[scales];
        q.scales_stage = v.layout.staged_payloads[scales];
        q.scales_row_bytes = c.payloads[scales].row_bytes;
        params_.copies[copies++] = q;
        continue;
      }
      if (in.row_bytes != c.payloads[i].row_bytes)
        comm::throw_config_error(field + ".row_bytes",
                                 "is " + std::to_string(in.row_bytes) + " but the session's payload '" +
                                     c.payloads[i].name + "' has " + std::to_string(c.payloads[i].row_bytes));
      const std::size_t vec = natural_alignment(in.row_bytes);
      require_device_pointer(in.data, field + ".data", vec);
      require_outside_session(in.data, max_tokens * in.row_bytes, v, field + ".data");
      params_.copies[copies++] = {static_cast<const char*>(in.data), in.row_bytes, v.layout.payloads[i],
                                  v.layout.staged_payloads[i], static_cast<int>(vec)};
    }
    params_.num_copies = copies;
    device::push_items::plan(params_);
    // A placement table of up to max_cached_table_words is read from shared memory (dispatch.cu).
    const long long table_words = 2LL * (static_cast<long long>(c.num_experts) + c.physical_experts());
    params_.table_cache_bytes =
        v.placed && table_words <= max_cached_table_words ? static_cast<int>(table_words * sizeof(int)) : 0;
    dev_ = session.dev_comm();
    remote_ = detail::make_remote_transport(session);
  });
}

cudaError_t dispatch_op::run(cudaStream_t stream) const noexcept {
  if (const cudaError_t st = link_.launch_status(); st != cudaSuccess) return st;
  const cudaError_t launched = detail::launch_dispatch(dev_, params_, stream);
  // The exchange is enqueued even when the kernel launch failed, so the other domains are not
  // left waiting; what it sends then carries the previous dispatch word, which their combine
  // rejects as out of step, and this rank's guard watches it as well. (A session that failed
  // on the host enqueues nothing, above: with several domains the other domains' exchange then
  // waits until their exchange guard ends it; docs/domains.md, failure modes.)
  const cudaError_t exchanged = remote_ ? remote_->exchange_dispatch(stream, launched == cudaSuccess) : cudaSuccess;
  return launched != cudaSuccess ? launched : exchanged;
}

summarize_op::summarize_op(const comm::ep_session& session, bool sanitize_unused_slots)
    : link_(session.link()), view_(session.view()), sanitize_(sanitize_unused_slots), grid_(local_grid()) {}

cudaError_t summarize_op::run(cudaStream_t stream) const noexcept {
  if (const cudaError_t st = link_.launch_status(); st != cudaSuccess) return st;
  return detail::launch_summarize(view_, sanitize_, grid_, stream);
}

quantize_rows_op::quantize_rows_op(const comm::ep_session& session, quantize_rows_args args)
    : link_(session.link()), view_(session.view()), args_(args), grid_(local_grid()) {
  const std::string op = "quantize_rows_args";
  if (args.max_rows < 0 || args.max_rows > comm::max_tokens_limit)
    comm::throw_config_error(op + ".max_rows", "is " + std::to_string(args.max_rows),
                             "use 0 .. " + std::to_string(comm::max_tokens_limit));
  if (args.hidden <= 0 || args.hidden % 8 != 0 || static_cast<std::size_t>(args.hidden) > comm::max_row_bytes)
    comm::throw_config_error(op + ".hidden", "is " + std::to_string(args.hidden),
                             "use a positive multiple of 8 elements (a last block of 128 may be partial)");
  if (args.format != fp8::scale_format::fp32 && args.format != fp8::scale_format::ue8m0)
    comm::throw_config_error(op + ".format", "is " + std::to_string(static_cast<int>(args.format)),
                             "use fp8::scale_format::fp32 or ue8m0");
  const auto rows = static_cast<std::size_t>(args.max_rows), hidden = static_cast<std::size_t>(args.hidden);
  const std::size_t scale_bytes = args.format == fp8::scale_format::ue8m0 ? 1 : sizeof(float);
  require_device_pointer(args.num_rows, op + ".num_rows", alignof(std::int32_t));
  require_device_pointer(args.rows, op + ".rows", 16);
  require_device_pointer(args.codes, op + ".codes", 8);
  require_device_pointer(args.scales, op + ".scales", scale_bytes);
  // The rows may be received payload rows (read in stream order); what it writes may not.
  require_outside_session(args.codes, rows * hidden, view_, op + ".codes");
  // Warps quantize different rows at once: no buffer may overlap another (in place would race).
  const auto overlap = [](const void* a, std::size_t a_bytes, const void* b, std::size_t b_bytes) {
    const auto x = reinterpret_cast<std::uintptr_t>(a), y = reinterpret_cast<std::uintptr_t>(b);
    return x < y + b_bytes && y < x + a_bytes;
  };
  const std::size_t scales_bytes = rows * static_cast<std::size_t>(fp8::blocks_of(args.hidden)) * scale_bytes;
  const char* hint = "give the rows, the codes and the scales buffers of their own (no in-place quantizing)";
  if (overlap(args.rows, rows * hidden * 2, args.codes, rows * hidden))
    comm::throw_config_error(op + ".codes", "overlaps the rows", hint);
  if (overlap(args.rows, rows * hidden * 2, args.scales, scales_bytes))
    comm::throw_config_error(op + ".scales", "overlaps the rows", hint);
  if (overlap(args.codes, rows * hidden, args.scales, scales_bytes))
    comm::throw_config_error(op + ".scales", "overlaps the codes", hint);
  require_outside_session(args.scales, rows * static_cast<std::size_t>(fp8::blocks_of(args.hidden)) * scale_bytes,
                          view_, op + ".scales");
}

cudaError_t quantize_rows_op::run(cudaStream_t stream) const noexcept {
  if (const cudaError_t st = link_.launch_status(); st != cudaSuccess) return st;
  return detail::launch_quantize_rows(args_, &view_.local_at<comm::device_faults>(view_.layout.faults)->input, grid_,
                                      stream);
}

prepare_combine_op::prepare_combine_op(const comm::ep_session& session, const void* expert_output,
                                       combine_precision precision)
    : link_(session.link()),
      view_(session.view()),
      source_(expert_output),
      grid_(local_grid()),
      vectorized_(view_.layout.combine_row_bytes % 16 == 0),
      precision_(precision) {
  check_combine_precision(precision, view_, "prepare_combine.precision");
  require_device_pointer(expert_output, "prepare_combine.expert_output",
                         vectorized_ || precision != combine_precision::exact ? 16
                                                                              : comm::element_size(view_.combine_type));
  require_outside_session(expert_output, view_.layout.combine.bytes, view_, "prepare_combine.expert_output",
                          expert_output == view_.window_at<char>(view_.layout.combine)
                              ? "it is the combine region: an expert output written there needs no prepare-combine"
                              : "pass a buffer of your own (peers and the kernels write the workspace)");
}

cudaError_t prepare_combine_op::run(cudaStream_t stream) const noexcept {
  if (const cudaError_t st = link_.launch_status(); st != cudaSuccess) return st;
  return detail::launch_prepare_combine(view_, source_, vectorized_, precision_, grid_, stream);
}

combine_op::combine_op(const comm::ep_session& session, combine_args args) : link_(session.link()) {
  session.agreed("combine_op planning", [&] {
    const comm::session_view& v = session.view();
    const std::size_t elem = comm::element_size(args.output_type);  // 0 for a value outside the enum
    if (elem == 0)
      comm::throw_config_error("combine_args.output_type",
                               "is " + std::to_string(static_cast<int>(args.output_type)) + ", not bf16, fp16 or fp32");
    if (args.num_tokens) require_device_pointer(args.num_tokens, "combine_args.num_tokens", alignof(std::int32_t));
    require_device_pointer(args.output, "combine_args.output", elem);
    require_outside_session(args.output, static_cast<std::size_t>(v.max_tokens) * v.hidden * elem, v,
                            "combine_args.output");
    params_.v = v;
    params_.output = args.output;
    params_.output_type = args.output_type;
    params_.vectorized = v.hidden % 8 == 0 && aligned(args.output, 16) && v.layout.combine.offset % 16 == 0;
    check_combine_precision(args.precision, v, "combine_args.precision");
    params_.precision = args.precision;
    if (args.precision == combine_precision::fp8 && !params_.vectorized)
      comm::throw_config_error("combine_args.output", "is not 16-byte aligned",
                               "an FP8 combine stores 16 elements per lane step: align the output to 16 bytes");
    cudaFuncAttributes attributes{};
    require_coresident(detail::combine_attributes(params_, &attributes), attributes, v, "combine");
    dev_ = session.dev_comm();
    remote_ = detail::make_remote_transport(session);
  });
  // Combine reads rows in the format the peers' prepare-combine wrote: every rank must use the
  // same precision, or the sums are silently wrong. Host AND-reductions tell (planning only).
  bool agreed = false;
  for (combine_precision p : {combine_precision::exact, combine_precision::fp8, combine_precision::bf16})
    agreed = session.all_agree(args.precision == p) || agreed;  // every rank runs all three
  if (!agreed)
    comm::throw_config_error("combine_args.precision",
                             "differs between ranks (this rank: " + precision_name(args.precision) + ")",
                             "plan the combine with the same precision on every rank");
}

cudaError_t combine_op::run(cudaStream_t stream) const noexcept {
  if (const cudaError_t st = link_.launch_status(); st != cudaSuccess) return st;
  const cudaError_t exchanged = remote_ ? remote_->exchange_combine(stream) : cudaSuccess;
  const cudaError_t launched = detail::launch_combine(dev_, params_, stream);
  // The kernel clears the exchange's mark; without it the guard would see the exchange run on.
  if (launched != cudaSuccess && remote_) (void)remote_->clear_combine_mark(stream);
  return exchanged != cudaSuccess ? exchanged : launched;
}

stage_failure_op::stage_failure_op(const comm::ep_session& session) : link_(session.link()), view_(session.view()) {}

cudaError_t stage_failure_op::run(cudaStream_t stream, int node) const noexcept {
  // Recorded even on a session that already failed: only a destroyed one is refused.
  if (const cudaError_t st = link_.launch_status(); st == cudaErrorInvalidResourceHandle) return st;
  return detail::launch_stage_failed(view_, node, stream);
}

}  // namespace epgraph::kernels
