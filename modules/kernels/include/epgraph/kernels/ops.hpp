#pragma once
// Dispatch, receive summary, prepare-combine and combine as CUTLASS-style operations:
// construction plans and validates on the host (throws epgraph::comm::error, never touches
// the GPU); run(stream) only launches: it never allocates, never synchronizes, never throws,
// and is capture-safe, so a step is captured once and replayed.
//
//                      collective?            allocates?  capture-safe?
//   dispatch_op::run   yes (LSA barrier/CTA)  no          yes
//   summarize_op::run  no (local)             no          yes
//   prepare_combine::run no (local)           no          yes
//   combine_op::run    yes (LSA barrier/CTA)  no          yes
//
// Collective runs must be issued in the same sequence on every rank (barrier epochs
// advance per launch). Token counts are read from device memory at run time, so one
// planned op (and one captured graph) serves every batch size up to max_tokens_per_rank.

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <vector>

#include "epgraph/comm/ep_session.hpp"
#include "epgraph/kernels/launch_params.hpp"

namespace epgraph::kernels {

/// One dispatched payload row source: `data` is [T][row_bytes] in device memory.
struct payload_input {
  const void* data = nullptr;
  std::size_t row_bytes = 0;
};

struct dispatch_args {
  const std::int32_t* num_tokens = nullptr;  ///< device scalar T (0 <= T <= max_tokens_per_rank)
  const std::int32_t* topk_ids = nullptr;    ///< device [T][top_k]; -1 = no expert
  std::vector<payload_input> payloads;       ///< one per configured payload, same order
};

/// Limits on the host-side checks (also used by tests).
std::size_t natural_alignment(std::size_t row_bytes) noexcept;  ///< largest of 16/8/4/2/1 dividing it

/// Pushes each token once per distinct destination rank into slot [rank][i] of that rank's
/// receive buffers (i = the token's position among this rank's tokens routed there, so the
/// result is deterministic), records (destination, slot) for combine, publishes per-source
/// counts, and ends with one LSA barrier per CTA.
class dispatch_op {
 public:
  dispatch_op(const comm::ep_session& session, dispatch_args args);
  [[nodiscard]] cudaError_t run(cudaStream_t stream) const noexcept;

 private:
  const comm::ep_session* session_;
  dispatch_params params_{};
};

/// Local, after dispatch: counts received tokens per local expert into
/// session.local_expert_counts() and, if asked, writes -1 into the top-k ids of unused
/// receive slots (for expert kernels that scan every slot).
class summarize_op {
 public:
  summarize_op(const comm::ep_session& session, bool sanitize_unused_slots);
  [[nodiscard]] cudaError_t run(cudaStream_t stream) const noexcept;

 private:
  comm::session_view view_;
  bool sanitize_;
  int grid_;  // chosen when planned, so run() only launches
};

/// Local: copies the valid rows of an expert output [ep][max_tokens][hidden] that lives
/// outside the workspace into the workspace combine region. Not needed (and rejected)
/// when the expert output already is the combine region.
class prepare_combine_op {
 public:
  prepare_combine_op(const comm::ep_session& session, const void* expert_output);
  [[nodiscard]] cudaError_t run(cudaStream_t stream) const noexcept;

 private:
  comm::session_view view_;
  const void* source_;
  int grid_;
  bool vectorized_;  // rows are whole 16-byte words
};

struct combine_args {
  const std::int32_t* num_tokens = nullptr;  ///< the same device scalar dispatch read
  void* output = nullptr;                    ///< device [T][hidden] of output_type
  comm::element_type output_type = comm::element_type::bf16;
};

/// LSA barrier at entry (every peer's expert output is complete), then each token pulls
/// its rows from the ranks it was sent to and sums them in fp32 in ascending rank order.
class combine_op {
 public:
  combine_op(const comm::ep_session& session, combine_args args);
  [[nodiscard]] cudaError_t run(cudaStream_t stream) const noexcept;

 private:
  const comm::ep_session* session_;
  combine_params params_{};
};

}  // namespace epgraph::kernels
