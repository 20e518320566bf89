#pragma once
// Device side of the synthetic problem: drawing a batch and the reference experts.
// Both only enqueue work (capture-safe, no allocation, no sync) and return the status.

#include <cuda_runtime_api.h>

#include <cstdint>
#include <vector>

#include "epgraph/comm/device_buffer.hpp"
#include "epgraph/graph/step.hpp"
#include "epgraph/sim/problem.hpp"

namespace epgraph::sim {

/// One rank's input buffers, sized for max_tokens (a view; batch_storage owns them).
struct batch_buffers {
  std::int32_t* num_tokens;  ///< scalar
  std::int32_t* topk_ids;    ///< [max_tokens][k]
  float* weights;            ///< [max_tokens][k]
  void* hidden;              ///< [max_tokens][hidden] of problem.dtype
};

/// Owns one rank's input buffers and its combine output ([max_tokens][hidden] of
/// problem.dtype). Allocates: yes (cudaMalloc). The dispatch payloads are those of
/// make_config(p): the hidden rows, then the router weights (with problem.quantize the hidden
/// rows are dispatch's quantize rows, and the scales are payload 2); combine_args carries
/// problem.combine.
class batch_storage {
 public:
  explicit batch_storage(const problem& p);
  const batch_buffers& inputs() const noexcept { return inputs_; }
  void* output() const noexcept { return output_.get(); }
  kernels::dispatch_args dispatch_args() const;
  kernels::combine_args combine_args() const;

 private:
  comm::element_type dtype_;
  std::vector<std::size_t> payload_row_bytes_;  // of make_config(p)
  bool quantize_;
  kernels::fp8::scale_format scales_;
  kernels::combine_precision combine_;
  comm::device_buffer num_tokens_, ids_, weights_, hidden_, output_;
  batch_buffers inputs_;
};

/// Writes batch `step` of `rank` (token count, routing, weights, hidden) into `out`.
cudaError_t generate_batch(const problem& p, int rank, std::uint64_t step, const batch_buffers& out,
                           cudaStream_t stream) noexcept;

/// Writes a token count directly (for tests that force a count, invalid ones included).
cudaError_t set_token_count(std::int32_t* num_tokens, int value, cudaStream_t stream) noexcept;

/// Fills rows [rows][row_bytes] with pattern_byte(seed, row, byte).
cudaError_t fill_pattern(void* dst, std::size_t rows, std::size_t row_bytes, std::uint64_t seed,
                         cudaStream_t stream) noexcept;

/// The reference expert stage: for every received row, sum over this rank's experts of
/// weight * scale(e) * x in fp32 (entry order), stored as problem.dtype into io.output. With an
/// expert-major view: each row becomes scale(e) * x, unweighted (the weighted un-permute then
/// applies the weights, and the combine output equals expected_output's bit for bit).
/// Needs payload 0 = hidden rows (make_config).
cudaError_t reference_experts(const problem& p, const graph::expert_stage_io& io, cudaStream_t stream) noexcept;

/// Device-side check of a combine output: adds the number of wrong elements of this step to
/// *wrong (no host synchronization, so every step of a long run can be checked). The expected
/// value is expected_output()'s; with problem.quantize, a reduced problem.combine or
/// problem.expert_major it is the arithmetic expect_output() (reference.hpp) describes, with
/// the library's quantizer rules (fp8_quantize.hpp).
cudaError_t check_output(const problem& p, int rank, std::uint64_t step, const void* output,
                         unsigned long long* wrong, cudaStream_t stream) noexcept;

/// An expert_stage callable bound to a problem.
graph::expert_stage reference_expert_stage(const problem& p);

/// A zero-copy step of the reference experts over `batch`'s buffers (expert output written
/// into the session's combine region).
graph::step_spec zero_copy_step(const comm::ep_session& session, const batch_storage& batch, const problem& p);

}  // namespace epgraph::sim
