// quantize_rows_op's kernel: bf16 rows into e4m3 codes and 1x128 block scales, with the
// quantizer the quantizing dispatch uses (device/fp8_rows.cuh), so both give the same bytes.
#include "device/common.cuh"
#include "device/fp8_rows.cuh"
#include "launch.hpp"

namespace epgraph::kernels {
namespace {

constexpr int kThreads = 256;
constexpr int kLoads = 4;  // 16-byte loads in flight per lane

// One warp per row, N codes per lane (16 when the rows are 16-byte aligned, else 8); rows
// beyond the (clamped) count are left alone.
template <int N>
__global__ void quantize_rows_kernel(const __grid_constant__ quantize_rows_args a, comm::fault_record* input) {
  constexpr int kLanesPerBlock = fp8::block / N, kSteps = kLoads * 8 / N;  // steps per round
  const int lane = threadIdx.x & 31;
  const int first_warp = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5), warps = gridDim.x * (blockDim.x >> 5);
  const int rows = device::clamp_token_count(*a.num_rows, a.max_rows, input, first_warp == 0 && lane == 0);
  const int steps = (a.hidden + 32 * N - 1) / (32 * N), blocks = fp8::blocks_of(a.hidden);
  for (int r = first_warp; r < rows; r += warps) {
    const auto* src = reinterpret_cast<const uint4*>(static_cast<const char*>(a.rows) + std::size_t(r) * a.hidden * 2);
    char* codes = static_cast<char*>(a.codes) + std::size_t(r) * a.hidden;
    for (int base = 0; base < steps; base += kSteps) {
      uint4 x[kSteps][N / 8];
#pragma unroll
      for (int u = 0; u < kSteps; ++u) device::load_lane<N>(src, base + u, lane, a.hidden, x[u]);  // zeros past the row
#pragma unroll
      for (int u = 0; u < kSteps; ++u) {
        const device::fp8_lane<N> q = device::quantize_lane<N>(x[u], a.format);
        device::store_codes<N>(codes, base + u, lane, a.hidden, q);
        const int block = (base + u) * (32 / kLanesPerBlock) + lane / kLanesPerBlock;
        if (lane % kLanesPerBlock == 0 && block < blocks) {
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
  const bool aligned16 = a.hidden % 16 == 0 && reinterpret_cast<std::uintptr_t>(a.codes) % 16 == 0;
  if (aligned16)
    quantize_rows_kernel<16><<<grid, kThreads, 0, stream>>>(a, input);
  else
    quantize_rows_kernel<8><<<grid, kThreads, 0, stream>>>(a, input);
  return cudaGetLastError();
}

}  // namespace epgraph::kernels
