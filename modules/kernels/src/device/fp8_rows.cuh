#pragma once
// The e4m3 block quantizer of epgraph/kernels/fp8_quantize.hpp on a warp (issue 15), shared by
// the quantizing dispatch, quantize_rows_op and the FP8 prepare-combine; and the FP8 combine's
// dequantization.
//
// A warp step covers 32 x N elements of a bf16 row (N = 8 or 16; 16 needs 16-byte aligned
// codes rows, and the caller chooses): lane l holds elements Nl .. Nl+N-1, so each block of 128
// is held by 128 / N neighbouring lanes, and its amax is a reduction over them. The scale arithmetic is fp8_quantize.hpp's own
// functions; the conversion is cvt.rn.satfinite (round to nearest even, +-Inf and |x| > 448 to
// +-448, as to_e4m3), and NaN codes get their input's sign here (the multiply by the inverse
// scale would make every NaN the canonical one). The GPU tests compare the bytes with the
// independent host reference.
#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include <cstdint>

#include "epgraph/kernels/fp8_quantize.hpp"

namespace epgraph::kernels::device {

/// One lane's share of a warp step of N elements per lane (8 or 16): its N codes and its
/// block's scale (the fp32 scale's bits, or the E8M0 byte).
template <int N>
struct fp8_lane {
  std::uint32_t codes[N / 4];
  std::uint32_t scale;
};

/// Quantizes this lane's N bf16 elements `x` (N / 8 vectors of 8; zeros past the end of the
/// row) with the block of its 128 / N lanes. Every lane of the warp must call it (shuffles).
template <int N>
__device__ inline fp8_lane<N> quantize_lane(const uint4 (&x)[N / 8], fp8::scale_format format) {
  float f[N];
#pragma unroll
  for (int v = 0; v < N / 8; ++v) {
    const std::uint32_t words[4] = {x[v].x, x[v].y, x[v].z, x[v].w};
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      f[8 * v + 2 * i] = __uint_as_float(words[i] << 16);
      f[8 * v + 2 * i + 1] = __uint_as_float(words[i] & 0xffff0000u);
    }
  }
  float amax = 0.0f;
  bool nan = false;
#pragma unroll
  for (int i = 0; i < N; ++i) {
    const float a = fabsf(f[i]);
    if (a <= 3.402823466e38f) amax = fmaxf(amax, a);  // finite elements only
    nan |= a != a;
  }
#pragma unroll
  for (int offset = fp8::block / N / 2; offset > 0; offset >>= 1)
    amax = fmaxf(amax, __shfl_xor_sync(~0u, amax, offset));

  fp8_lane<N> out;
  float multiplier;
  if (format == fp8::scale_format::ue8m0) {
    const int k = fp8::ue8m0_exponent(amax);
    multiplier = fp8::exp2_negated(k);
    out.scale = static_cast<std::uint32_t>(k + 127);
  } else {
    multiplier = fp8::fp32_inverse_scale(amax);
    out.scale = __float_as_uint(fp8::fp32_scale(amax));
  }
#pragma unroll
  for (int w = 0; w < N / 4; ++w) {
    std::uint32_t word = 0;
#pragma unroll
    for (int h = 0; h < 2; ++h) {  // element 4w + 2h in the low byte of its pair
      const std::uint32_t pair = __nv_cvt_float2_to_fp8x2(
          make_float2(f[4 * w + 2 * h] * multiplier, f[4 * w + 2 * h + 1] * multiplier), __NV_SATFINITE, __NV_E4M3);
      word |= pair << (16 * h);
    }
    out.codes[w] = word;
  }
  if (nan) {  // rare: a NaN code with the input's sign
#pragma unroll
    for (int i = 0; i < N; ++i) {
      if (f[i] == f[i]) continue;
      const std::uint32_t code = (__float_as_uint(f[i]) >> 24 & 0x80u) | 0x7fu, shift = 8 * (i & 3);
      out.codes[i / 4] = (out.codes[i / 4] & ~(0xffu << shift)) | code << shift;
    }
  }
  return out;
}

/// This lane's N bf16 elements of step `step` of a row of `hidden` elements (a multiple of 8),
/// zeros past its end (they do not change a block's amax).
template <int N>
__device__ inline void load_lane(const uint4* row, int step, int lane, int hidden, uint4 (&x)[N / 8]) {
#pragma unroll
  for (int v = 0; v < N / 8; ++v) {
    const int i = (step * 32 + lane) * (N / 8) + v;  // vector of 8 elements
    x[v] = 8 * i < hidden ? row[i] : make_uint4(0, 0, 0, 0);
  }
}

/// Stores this lane's codes of step `step` into a codes row of `hidden` bytes (N-aligned rows:
/// hidden % N == 0 when N is 16), if they lie in the row.
template <int N>
__device__ inline void store_codes(char* row, int step, int lane, int hidden, const fp8_lane<N>& q) {
  const int first = (step * 32 + lane) * N;
  if (first >= hidden) return;
  if constexpr (N == 16)
    *reinterpret_cast<uint4*>(row + first) = make_uint4(q.codes[0], q.codes[1], q.codes[2], q.codes[3]);
  else
    *reinterpret_cast<uint2*>(row + first) = make_uint2(q.codes[0], q.codes[1]);
}

/// A whole bf16 row of `hidden` elements quantized by one warp, N elements per lane:
/// codes into `codes` (hidden bytes), block scales into `scales` (fp32 or E8M0 bytes). For the
/// local kernels (quantize_rows_op, the FP8 prepare-combine); dispatch has its own loop, which
/// stores each step to several destinations.
template <int N>
__device__ inline void quantize_row(const uint4* src, char* codes, void* scales, int hidden, fp8::scale_format format,
                                    int lane) {
  constexpr int kLanesPerBlock = fp8::block / N, kSteps = 4 * 8 / N;  // four 16-byte loads in flight per lane
  const int steps = (hidden + 32 * N - 1) / (32 * N), blocks = fp8::blocks_of(hidden);
  for (int base = 0; base < steps; base += kSteps) {
    uint4 x[kSteps][N / 8];
#pragma unroll
    for (int u = 0; u < kSteps; ++u) load_lane<N>(src, base + u, lane, hidden, x[u]);  // zeros past the row
#pragma unroll
    for (int u = 0; u < kSteps; ++u) {
      const fp8_lane<N> q = quantize_lane<N>(x[u], format);
      store_codes<N>(codes, base + u, lane, hidden, q);
      const int block = (base + u) * (32 / kLanesPerBlock) + lane / kLanesPerBlock;
      if (lane % kLanesPerBlock == 0 && block < blocks) {
        if (format == fp8::scale_format::ue8m0)
          static_cast<std::uint8_t*>(scales)[block] = static_cast<std::uint8_t>(q.scale);
        else
          static_cast<std::uint32_t*>(scales)[block] = q.scale;
      }
    }
  }
}

/// Adds code x scale (one fp32 rounding each) for 16 codes to acc, in element order: the FP8
/// combine's dequantization (e4m3 values are exact in fp16, so the conversion is exact).
__device__ inline void add_dequantized(const uint4& codes, float scale, float (&acc)[16]) {
  const std::uint32_t words[4] = {codes.x, codes.y, codes.z, codes.w};
#pragma unroll
  for (int w = 0; w < 4; ++w) {
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const __half2_raw pair =
          __nv_cvt_fp8x2_to_halfraw2(static_cast<__nv_fp8x2_storage_t>(words[w] >> (16 * h)), __NV_E4M3);
      const float2 v = __half22float2(__half2(pair));
      acc[4 * w + 2 * h] = __fadd_rn(acc[4 * w + 2 * h], __fmul_rn(v.x, scale));
      acc[4 * w + 2 * h + 1] = __fadd_rn(acc[4 * w + 2 * h + 1], __fmul_rn(v.y, scale));
    }
  }
}

}  // namespace epgraph::kernels::device
