// Local (non-collective) kernels: receive summary and prepare-combine (exact, FP8 or bf16).
#include "epgraph/comm/progress.hpp"
#include "device/common.cuh"
#include "device/fp8_rows.cuh"
#include "launch.hpp"
#include "programmatic_launch.cuh"

namespace epgraph::kernels {
namespace {

constexpr int kLocalThreads = 256;

__device__ inline int clamped_count(const comm::session_view& v, int src) {
  const int n = v.window_at<const std::int32_t>(v.layout.counts)[src];
  return min(max(n, 0), v.max_tokens);
}

// One thread per (source, slot): count local experts of valid rows, blank unused rows.
__global__ void summarize_kernel(const __grid_constant__ comm::session_view v, bool sanitize) {
  device::after_previous_kernel(v.programmatic_launch);
  auto* ids = v.window_at<std::int32_t>(v.layout.topk_ids);
  auto* expert_counts = v.local_at<std::int32_t>(v.layout.expert_counts);
  const int rows = v.ep_size * v.max_tokens;
  for (int r = blockIdx.x * blockDim.x + threadIdx.x; r < rows; r += gridDim.x * blockDim.x) {
    const int src = r / v.max_tokens, slot = r % v.max_tokens;
    std::int32_t* row = ids + static_cast<std::size_t>(r) * v.top_k;
    if (slot < clamped_count(v, src)) {
      for (int j = 0; j < v.top_k; ++j) {
        const int local = v.local_slot_of(row[j]);
        if (local >= 0) atomicAdd(&expert_counts[local], 1);
      }
    } else if (sanitize) {
      for (int j = 0; j < v.top_k; ++j) row[j] = -1;
    }
  }
}

// One CTA: this step's counts into the load statistics (64-bit, across steps).
__global__ void accumulate_load_kernel(const __grid_constant__ comm::session_view v) {
  device::after_previous_kernel(v.programmatic_launch);
  const auto* expert_counts = v.local_at<const std::int32_t>(v.layout.expert_counts);
  auto* load = v.local_at<unsigned long long>(v.layout.expert_load);
  for (int e = threadIdx.x; e < v.local_slots; e += blockDim.x)
    load[e] += static_cast<unsigned long long>(expert_counts[e]);
  if (threadIdx.x == 0) {
    unsigned long long received = 0;
    for (int src = 0; src < v.ep_size; ++src) received += static_cast<unsigned long long>(clamped_count(v, src));
    load[v.local_slots] += received;
  }
}

// One warp per valid row: copy the expert output row into the workspace combine region.
template <class V>
__global__ void prepare_combine_kernel(const __grid_constant__ comm::session_view v, const char* source) {
  device::after_previous_kernel(v.programmatic_launch);
  const int lane = threadIdx.x & 31;
  const int warps = gridDim.x * (blockDim.x >> 5);
  const int rows = v.ep_size * v.max_tokens;
  const std::size_t row_bytes = v.layout.combine_row_bytes, nvec = row_bytes / sizeof(V);
  char* combine = v.window_at<char>(v.layout.combine);
  for (int r = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5); r < rows; r += warps) {
    if (r % v.max_tokens >= clamped_count(v, r / v.max_tokens)) continue;
    const std::size_t offset = static_cast<std::size_t>(r) * row_bytes;
    const V* src = reinterpret_cast<const V*>(source + offset);
    V* dst = reinterpret_cast<V*>(combine + offset);
    for (std::size_t i = lane; i < nvec; i += 32) dst[i] = src[i];
  }
}

// The FP8 prepare-combine: one warp per valid row quantizes the bf16 expert output row into
// its place in the combine region, [hidden codes][blocks fp32 scales] (combine_precision::fp8).
__global__ void prepare_combine_fp8_kernel(const __grid_constant__ comm::session_view v, const char* source) {
  device::after_previous_kernel(v.programmatic_launch);
  const int lane = threadIdx.x & 31;
  const int warps = gridDim.x * (blockDim.x >> 5);
  const int rows = v.ep_size * v.max_tokens;
  const std::size_t row_bytes = v.layout.combine_row_bytes;
  char* combine = v.window_at<char>(v.layout.combine);
  for (int r = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5); r < rows; r += warps) {
    if (r % v.max_tokens >= clamped_count(v, r / v.max_tokens)) continue;
    char* row = combine + static_cast<std::size_t>(r) * row_bytes;
    device::quantize_row<16>(reinterpret_cast<const uint4*>(source + static_cast<std::size_t>(r) * row_bytes), row,
                             row + v.hidden, v.hidden, fp8::scale_format::fp32, lane);
  }
}

// The bf16 prepare-combine: one warp per valid row rounds the fp32 expert output row to bf16
// (to nearest even, as __float2bfloat16_rn) into the first half of its place in the combine
// region (combine_precision::bf16), 8 elements per lane step.
__global__ void prepare_combine_bf16_kernel(const __grid_constant__ comm::session_view v, const char* source) {
  device::after_previous_kernel(v.programmatic_launch);
  const int lane = threadIdx.x & 31;
  const int warps = gridDim.x * (blockDim.x >> 5);
  const int rows = v.ep_size * v.max_tokens, groups = v.hidden / 8;
  const std::size_t row_bytes = v.layout.combine_row_bytes;
  char* combine = v.window_at<char>(v.layout.combine);
  for (int r = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5); r < rows; r += warps) {
    if (r % v.max_tokens >= clamped_count(v, r / v.max_tokens)) continue;
    const std::size_t offset = static_cast<std::size_t>(r) * row_bytes;
    const float4* src = reinterpret_cast<const float4*>(source + offset);
    uint4* dst = reinterpret_cast<uint4*>(combine + offset);
    for (int g = lane; g < groups; g += 32) {
      const float4 a = src[2 * g], b = src[2 * g + 1];
      const float f[8] = {a.x, a.y, a.z, a.w, b.x, b.y, b.z, b.w};
      std::uint32_t words[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const __nv_bfloat162 pair = __floats2bfloat162_rn(f[2 * i], f[2 * i + 1]);
        words[i] = *reinterpret_cast<const std::uint32_t*>(&pair);
      }
      dst[g] = make_uint4(words[0], words[1], words[2], words[3]);
    }
  }
}

// One thread: a step node failed on this rank; the collectives that follow only keep the peers
// in step (a fatal fault makes them stop at once and tell the peers). The dispatch word is
// marked stopped too: the combine exchange carries it to the ranks of other domains, whose
// combine then faults instead of summing this rank's unfinished rows.
// dispatch_done: with several domains (else null), set to the same word, so that the exchange
// guard does not take the changed word for a dispatch exchange that runs.
__global__ void stage_failed_kernel(comm::device_faults* faults, std::uint64_t* dispatch_word,
                                    std::uint64_t* dispatch_done, int node) {
  comm::fault_record f;
  f.code = comm::fault_code::local_stage_failed;
  f.value = node;
  comm::device::record_fault(&faults->fatal, f);
  const std::uint64_t stopped =
      comm::progress_word(comm::progress_seq(*dispatch_word), comm::collective_kind::stopped);
  *dispatch_word = stopped;
  if (dispatch_done) *dispatch_done = stopped;
}

}  // namespace

cudaError_t detail::launch_stage_failed(const comm::session_view& v, int node, cudaStream_t stream) noexcept {
  std::uint64_t* done = v.domain_size < v.ep_size ? v.remote_at<std::uint64_t>(v.layout.dispatch_done) : nullptr;
  stage_failed_kernel<<<1, 1, 0, stream>>>(v.local_at<comm::device_faults>(v.layout.faults),
                                           v.local_at<std::uint64_t>(v.layout.dispatch_word), done, node);
  return cudaGetLastError();
}

cudaError_t detail::launch_summarize(const comm::session_view& v, bool sanitize, int grid,
                                     cudaStream_t stream) noexcept {
  cudaError_t st =
      cudaMemsetAsync(v.local_at<std::int32_t>(v.layout.expert_counts), 0, v.layout.expert_counts.bytes, stream);
  if (st != cudaSuccess) return st;
  const bool pdl = v.programmatic_launch;
  if (st = launch_kernel(summarize_kernel, grid, kLocalThreads, 0, stream, pdl, v, sanitize); st != cudaSuccess) return st;
  return launch_kernel(accumulate_load_kernel, 1, kLocalThreads, 0, stream, pdl, v);
}

cudaError_t detail::launch_prepare_combine(const comm::session_view& v, const void* source, bool vectorized,
                                           combine_precision precision, int grid, cudaStream_t stream) noexcept {
  const auto* src = static_cast<const char*>(source);
  void (*kernel)(const comm::session_view, const char*) =
      precision == combine_precision::fp8    ? prepare_combine_fp8_kernel
      : precision == combine_precision::bf16 ? prepare_combine_bf16_kernel
      : vectorized                           ? prepare_combine_kernel<uint4>
                                             : prepare_combine_kernel<std::uint16_t>;
  return launch_kernel(kernel, grid, kLocalThreads, 0, stream, v.programmatic_launch, v, src);
}

}  // namespace epgraph::kernels
