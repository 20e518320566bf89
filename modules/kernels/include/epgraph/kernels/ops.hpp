#pragma once
// Dispatch, receive summary, prepare-combine and combine as CUTLASS-style operations:
// construction plans and validates on the host (throws epgraph::comm::error); run(stream) only
// launches: it never allocates, never synchronizes, never throws, and is capture-safe, so a
// step is captured once and replayed.
//
//                          run: collective?       constructor           allocates?  capture-safe?
//   dispatch_op            yes (LSA barrier/CTA)  collective (agreed)   no          run: yes
//   combine_op             yes (LSA barrier/CTA)  collective (agreed)   no          run: yes
//   (with several NVLink domains, their run() also enqueues an NCCL send/recv group: collective
//    with the ranks of the other domains, capture-safe, not bounded by the session's deadline)
//   summarize_op           no (local)             local                 no          run: yes
//   quantize_rows_op       no (local)             local                 no          run: yes
//   prepare_combine_op     no (local)             local                 no          run: yes
//   stage_failure_op       no (local)             local                 no          run: yes
//
// Collective constructors agree across ranks: if planning fails on any rank (a misaligned
// pointer on one of them, say), it throws on every rank together, so no rank launches alone.
// Collective runs must be issued in the same sequence on every rank. A rank that runs one
// more or one fewer is caught at the next barrier (a fatal fault, `collective out of step`), a
// peer that never comes at the session's deadline (`peers did not arrive`); see
// ep_session::check_faults. Token counts are read from device memory at run time, so one
// planned op (and one captured graph) serves every batch size up to max_tokens_per_rank.
//
// Planned ops copy what they launch with (the session view and device communicator) and keep
// a session_link: they survive moves of the session. run() returns
// cudaErrorInvalidResourceHandle without launching once the session was destroyed, and
// cudaErrorNotPermitted once it failed or was aborted.
//
// Concurrency: every CTA of a collective launch must be resident at once (checked when
// planned: num_ctas <= SMs, threads within the kernel's compiled limit). Collective kernels that may run at
// the same time (two sessions, or NCCL kernels on other streams) need the sum of their CTAs
// resident too; when they are not, dispatch's look-back or a barrier check hits the deadline:
// a fatal fault, not a hang. Ops of one session must not overlap on the device (one stream,
// or ordered streams). A run whose CTA starts while another run of the session still holds
// that CTA index (up to the other kernel's last warp) is a fatal fault (`overlapping
// collective launches`), and every later run is refused. A run that starts at the very
// instant another one ends is not guaranteed to be caught (misuse; see README, Rules).
// With ep_config::programmatic_launch (the default) each kernel may be resident before the
// kernel ahead of it ended, and waits for it before touching memory; dispatch and combine let
// the next kernel launch early only once past their last wait for a peer (README, Rules).

#include <cuda_runtime_api.h>
#include <nccl_device/impl/comm__types.h>  // host-visible ncclDevComm layout

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "epgraph/comm/ep_session.hpp"
#include "epgraph/kernels/launch_params.hpp"

namespace epgraph::kernels {

namespace detail {
class remote_transport;  // the exchange with other NVLink domains (src/remote_transport.hpp)
}  // namespace detail

/// One dispatched payload row source: `data` is [T][row_bytes] in device memory.
struct payload_input {
  const void* data = nullptr;
  std::size_t row_bytes = 0;
};

/// A quantizing dispatch (issue 15): dispatch reads bf16 hidden rows, quantizes each token
/// once on this rank (epgraph/kernels/fp8_quantize.hpp: e4m3, 1x128 blocks, the last one
/// partial) and sends its codes and block scales into two of the session's payloads. The
/// receivers see ordinary payload rows.
struct fp8_dispatch {
  /// Device [max_tokens_per_rank][hidden] bf16, 16-byte aligned, where hidden is the codes
  /// payload's row_bytes (one byte per element; a multiple of 8).
  const void* rows = nullptr;
  int codes_payload = -1;   ///< session payload of the codes (row_bytes = hidden)
  int scales_payload = -1;  ///< session payload of the scales: blocks_of(hidden) x 4 bytes (fp32) or x 1 (ue8m0)
  fp8::scale_format scales = fp8::scale_format::fp32;
};

struct dispatch_args {
  const std::int32_t* num_tokens = nullptr;  ///< device scalar T (0 <= T <= max_tokens_per_rank)
  const std::int32_t* topk_ids = nullptr;    ///< device [T][top_k]; -1 = no expert
  /// One per configured payload, same order. With `quantize`, the entries of its codes and
  /// scales payloads stay empty (null data): dispatch writes those rows.
  std::vector<payload_input> payloads;
  std::optional<fp8_dispatch> quantize;  ///< set: a quantizing dispatch
};

/// Limits on the host-side checks (also used by tests).
std::size_t natural_alignment(std::size_t row_bytes) noexcept;  ///< largest of 16/8/4/2/1 dividing it

/// Pushes each token once per distinct destination rank into slot [rank][i] of that rank's
/// receive buffers (i = the token's position among this rank's tokens routed there, so the
/// result is deterministic), records (destination, slot) and the token count for combine,
/// publishes per-source counts, and ends with one LSA barrier per CTA. With several NVLink
/// domains, run() also enqueues the NCCL exchange with the other domains after the kernel.
class dispatch_op {
 public:
  dispatch_op(const comm::ep_session& session, dispatch_args args);
  [[nodiscard]] cudaError_t run(cudaStream_t stream) const noexcept;

 private:
  comm::session_link link_;
  ncclDevComm dev_{};
  dispatch_params params_{};
  std::shared_ptr<const detail::remote_transport> remote_;  // null with one domain
};

/// Local, after dispatch: counts received tokens per local expert into
/// session.local_expert_counts() (one per top-k entry: a token that names an expert twice
/// counts twice there, and once in the expert-major permute, which records the repeat), adds them and the received tokens to the load statistics (ep_session::read_expert_load),
/// and, if asked, writes -1 into the top-k ids of unused receive slots (for expert kernels
/// that scan every slot).
class summarize_op {
 public:
  summarize_op(const comm::ep_session& session, bool sanitize_unused_slots);
  [[nodiscard]] cudaError_t run(cudaStream_t stream) const noexcept;

 private:
  comm::session_link link_;
  comm::session_view view_;
  bool sanitize_;
  int grid_;  // chosen when planned, so run() only launches
};

struct quantize_rows_args {
  /// Device scalar: the rows to quantize, clamped into [0, max_rows] (a count outside it is
  /// recorded as an input fault of the session, as dispatch records a bad token count).
  const std::int32_t* num_rows = nullptr;
  int max_rows = 0;
  int hidden = 0;                ///< elements per row, a multiple of 8
  const void* rows = nullptr;    ///< device [max_rows][hidden] bf16, 16-byte aligned
  void* codes = nullptr;         ///< device [max_rows][hidden] e4m3 codes, 8-byte aligned
  void* scales = nullptr;        ///< device [max_rows][blocks_of(hidden)]: fp32 (4-byte aligned) or UE8M0 bytes
  fp8::scale_format format = fp8::scale_format::fp32;
};

/// Local: quantizes bf16 rows into e4m3 codes and 1x128 block scales, the same bytes as the
/// quantizing dispatch (fp8_dispatch). The separate kernel of "quantize, then dispatch FP8",
/// and a helper for expert stages.
class quantize_rows_op {
 public:
  quantize_rows_op(const comm::ep_session& session, quantize_rows_args args);
  [[nodiscard]] cudaError_t run(cudaStream_t stream) const noexcept;

 private:
  comm::session_link link_;
  comm::session_view view_;  // for its fault word
  quantize_rows_args args_;
  int grid_;
};

/// What combine pulls (issue 15). The enum lives in launch_params.hpp:
/// - exact: the expert output rows as they are (combine_type).
/// - fp8: each row quantized by prepare-combine to e4m3 with 1x128 fp32 scales (the quantizer of
///   fp8_quantize.hpp), laid out in the row's place in the combine region as [hidden codes]
///   [blocks_of(hidden) fp32 scales]; combine dequantizes (code x scale, one fp32 rounding) and
///   sums in fp32 in the same ascending rank order, rounding once. Needs a bf16 combine_type,
///   hidden % 16 == 0 and a 16-byte aligned combine output.
/// - bf16: fp32 expert output rounded to bf16 (to nearest even) by prepare-combine, into the
///   first half of the row's place; combine sums the bf16 rows in fp32 as the exact path does.
///   Half the NVLink bytes of an fp32 combine (the exchange with other NVLink domains still
///   sends whole rows). Needs an fp32 combine_type and hidden % 8 == 0.
/// Both reduced precisions need an expert output outside the combine region (a prepare-combine
/// node) and the same precision on every rank (combine_op planning checks it). The
/// prepare_combine_op and the combine_op of a step must be planned with the same precision
/// (plan_step takes both from step_spec::combine.precision; ops composed by hand must).

/// Local: copies the valid rows of an expert output [ep][max_tokens][hidden] that lives
/// outside the workspace into the workspace combine region (fp8 / bf16: reduced into it). A
/// source that overlaps the session's memory (the combine region itself: zero copy needs no
/// prepare-combine) is rejected.
class prepare_combine_op {
 public:
  prepare_combine_op(const comm::ep_session& session, const void* expert_output,
                     combine_precision precision = combine_precision::exact);
  [[nodiscard]] cudaError_t run(cudaStream_t stream) const noexcept;

 private:
  comm::session_link link_;
  comm::session_view view_;
  const void* source_;
  int grid_;
  bool vectorized_;  // rows are whole 16-byte words
  combine_precision precision_;
};

struct combine_args {
  /// Optional. Combine sums the tokens the last dispatch handled, with the count that dispatch
  /// recorded on the device; plan_step checks that a scalar given here is dispatch's.
  const std::int32_t* num_tokens = nullptr;
  void* output = nullptr;  ///< device [max_tokens][hidden] of output_type, outside the session's memory
  comm::element_type output_type = comm::element_type::bf16;
  /// fp8 / bf16: the combine region holds rows prepare-combine reduced to that precision.
  combine_precision precision = combine_precision::exact;
};

/// LSA barrier at entry (every peer's expert output is complete), then each token pulls
/// its rows from the ranks it was sent to and sums them in fp32 in ascending rank order.
/// A faulted combine writes NaN into the output rows it owns. With several NVLink domains,
/// run() first enqueues the NCCL exchange that brings the other domains' rows.
class combine_op {
 public:
  combine_op(const comm::ep_session& session, combine_args args);
  [[nodiscard]] cudaError_t run(cudaStream_t stream) const noexcept;

 private:
  comm::session_link link_;
  ncclDevComm dev_{};
  combine_params params_{};
  std::shared_ptr<const detail::remote_transport> remote_;  // null with one domain
};

/// Local: records that node `node` of a step failed on this rank (fatal fault
/// local_stage_failed). The collectives enqueued after it still launch, only to keep the
/// peers in step: they stop at once and tell the peers, who fault instead of waiting.
class stage_failure_op {
 public:
  explicit stage_failure_op(const comm::ep_session& session);
  [[nodiscard]] cudaError_t run(cudaStream_t stream, int node) const noexcept;

 private:
  comm::session_link link_;
  comm::session_view view_;
};

}  // namespace epgraph::kernels
