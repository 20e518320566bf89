// quantize_rows_op's kernel: bf16 rows into e4m3 codes and 1x128 block scales, with the
// quantizer the quantizing dispatch uses (device/fp8_rows.cuh), so both give the same bytes.
#include "device/common.cuh"
#include "device/fp8_rows.cuh"
#include "launch.hpp"

namespace epgraph::kernels {
namespace {

constexpr int kThreads = 256;

// One warp per row, N codes per lane (16 when the rows are 16-byte aligned, else 8); rows
// beyond the (clamped) count are left alone.
template <int N>
__global__ void quantize_rows_kernel(const __grid_constant__ quantize_rows_args a, comm::fault_record* input) {
  const int lane = threadIdx.x & 31;
  const int first_warp = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5), warps = gridDim.x * (blockDim.x >> 5);
  const int rows = device::clamp_token_count(*a.num_rows, a.max_rows, input, first_warp == 0 && lane == 0);
  const std::size_t scale_row = std::size_t(fp8::blocks_of(a.hidden)) * (a.format == fp8::scale_format::ue8m0 ? 1 : 4);
  for (int r = first_warp; r < rows; r += warps)
    device::quantize_row<N>(reinterpret_cast<const uint4*>(static_cast<const char*>(a.rows) + std::size_t(r) * a.hidden * 2),
                            static_cast<char*>(a.codes) + std::size_t(r) * a.hidden,
                            static_cast<char*>(a.scales) + std::size_t(r) * scale_row, a.hidden, a.format, lane);
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
