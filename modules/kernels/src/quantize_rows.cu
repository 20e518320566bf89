// quantize_rows_op's kernel: bf16 rows into e4m3 codes and 1x128 block scales, with the
// quantizer the quantizing dispatch uses (device/fp8_rows.cuh), so both give the same bytes.
#include "device/common.cuh"
#include "device/fp8_rows.cuh"
#include "launch.hpp"

namespace epgraph::kernels {
namespace {

constexpr int kThreads = 256;
constexpr int kUnroll = 4;  // warp steps (of 256 elements) with their loads in flight

// One warp per row; rows beyond the (clamped) count are left alone.
__global__ void quantize_rows_kernel(const __grid_constant__ quantize_rows_args a, comm::fault_record* input) {
  const int lane = threadIdx.x & 31;
  const int first_warp = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5), warps = gridDim.x * (blockDim.x >> 5);
  const int rows = device::clamp_token_count(*a.num_rows, a.max_rows, input, first_warp == 0 && lane == 0);
  const int steps = (a.hidden + device::kFp8StepElements - 1) / device::kFp8StepElements;
  const int blocks = fp8::blocks_of(a.hidden);
  for (int r = first_warp; r < rows; r += warps) {
    const auto* src = reinterpret_cast<const uint4*>(static_cast<const char*>(a.rows) + std::size_t(r) * a.hidden * 2);
    auto* codes = reinterpret_cast<uint2*>(static_cast<char*>(a.codes) + std::size_t(r) * a.hidden);
    for (int base = 0; base < steps; base += kUnroll) {
      uint4 x[kUnroll];
#pragma unroll
      for (int u = 0; u < kUnroll; ++u)
        x[u] = base + u < steps ? device::load_bf16x8(src, (base + u) * 32 + lane, a.hidden) : make_uint4(0, 0, 0, 0);
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        const device::fp8_lane q = device::quantize_lane(x[u], a.format);
        const int i = (base + u) * 32 + lane, block = 2 * (base + u) + lane / 16;
        if (base + u >= steps) continue;
        if (8 * i < a.hidden) codes[i] = q.codes;
        if (lane % 16 == 0 && block < blocks) {
          if (a.format == fp8::scale_format::ue8m0)
            static_cast<std::uint8_t*>(a.scales)[std::size_t(r) * blocks + block] = static_cast<std::uint8_t>(q.scale);
          else
            static_cast<std::uint32_t*>(a.scales)[std::size_t(r) * blocks + block] = q.scale;
        }
      }
    }
  }
}

}  // namespace

cudaError_t detail::launch_quantize_rows(const quantize_rows_args& a, comm::fault_record* input, int grid,
                                         cudaStream_t stream) noexcept {
  quantize_rows_kernel<<<grid, kThreads, 0, stream>>>(a, input);
  return cudaGetLastError();
}

}  // namespace epgraph::kernels
