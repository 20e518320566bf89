#pragma once
// The e4m3 block quantizer of epgraph/kernels/fp8_quantize.hpp on a warp (issue 15): the
// quantizing dispatch and quantize_rows_op share it.
//
// A warp step covers 256 elements of a bf16 row: lane l holds elements 8l .. 8l+7 (one
// 16-byte load), so lanes 0-15 hold block 2j and lanes 16-31 block 2j+1 of step j. A block's
// amax is a reduction over its 16 lanes. The scale arithmetic is fp8_quantize.hpp's own
// functions; the conversion is cvt.rn.satfinite (round to nearest even, +-Inf and |x| > 448 to
// +-448, as to_e4m3), and NaN codes get their input's sign here (the multiply by the inverse
// scale would make every NaN the canonical one). The GPU tests compare the bytes with the
// independent host reference.
#include <cuda_fp8.h>

#include <cstdint>

#include "epgraph/kernels/fp8_quantize.hpp"

namespace epgraph::kernels::device {

inline constexpr int kFp8StepElements = 256;  // one warp step: 32 lanes x 8 elements, two blocks

/// One lane's share of a warp step: its 8 codes and its block's scale (the fp32 scale's bits,
/// or the E8M0 byte).
struct fp8_lane {
  uint2 codes;
  std::uint32_t scale;
};

/// Quantizes this lane's 8 bf16 elements `x` (zeros past the end of the row) with the block
/// of its half-warp. Every lane of the warp must call it (shuffles).
__device__ inline fp8_lane quantize_lane(const uint4& x, fp8::scale_format format) {
  const std::uint32_t words[4] = {x.x, x.y, x.z, x.w};
  float f[8];
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    f[2 * i] = __uint_as_float(words[i] << 16);
    f[2 * i + 1] = __uint_as_float(words[i] & 0xffff0000u);
  }
  float amax = 0.0f;
  bool nan = false;
#pragma unroll
  for (int i = 0; i < 8; ++i) {
    const float a = fabsf(f[i]);
    if (a <= 3.402823466e38f) amax = fmaxf(amax, a);  // finite elements only
    nan |= a != a;
  }
#pragma unroll
  for (int offset = 8; offset > 0; offset >>= 1) amax = fmaxf(amax, __shfl_xor_sync(~0u, amax, offset));

  fp8_lane out;
  float multiplier;
  if (format == fp8::scale_format::ue8m0) {
    const int k = fp8::ue8m0_exponent(amax);
    multiplier = fp8::exp2_negated(k);
    out.scale = static_cast<std::uint32_t>(k + 127);
  } else {
    multiplier = fp8::fp32_inverse_scale(amax);
    out.scale = __float_as_uint(fp8::fp32_scale(amax));
  }
  std::uint32_t pairs[4];
#pragma unroll
  for (int i = 0; i < 4; ++i)
    pairs[i] = __nv_cvt_float2_to_fp8x2(make_float2(f[2 * i] * multiplier, f[2 * i + 1] * multiplier), __NV_SATFINITE,
                                        __NV_E4M3);  // element 2i in the low byte
  out.codes = make_uint2(pairs[0] | pairs[1] << 16, pairs[2] | pairs[3] << 16);
  if (nan) {  // rare: a NaN code with the input's sign
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      if (f[i] == f[i]) continue;
      const std::uint32_t code = (__float_as_uint(f[i]) >> 24 & 0x80u) | 0x7fu, shift = 8 * (i & 3);
      std::uint32_t& word = i < 4 ? out.codes.x : out.codes.y;
      word = (word & ~(0xffu << shift)) | code << shift;
    }
  }
  return out;
}

/// 8 bf16 elements of a row of `hidden` elements at vector index i (8 elements each), zeros
/// past its end (they do not change a block's amax).
__device__ inline uint4 load_bf16x8(const uint4* row, int i, int hidden) {
  return 8 * i < hidden ? row[i] : make_uint4(0, 0, 0, 0);
}

}  // namespace epgraph::kernels::device
