#pragma once
#include "epgraph/comm/requires_cxx20.hpp"
// FP8 e4m3 quantization with 1x128 block scales (issue 15): one definition for the host (unit
// tests against an independent reference, sim::reference_*) and the device (the quantizing
// dispatch, quantize_rows_op and the FP8 prepare-combine). Every step is one correctly rounded
// IEEE fp32 operation, so both give the same bytes (the device converts with cvt.rn.satfinite,
// which rounds as to_e4m3 does; the GPU tests compare it with the host reference).
//
// e4m3 (the "fn" variant: no infinities): sign, 4 exponent bits (bias 7), 3 mantissa bits;
// largest 448, smallest normal 2^-6, smallest subnormal 2^-9; NaN is S.1111.111.
//   to_e4m3     round to nearest, ties to even; |x| > 448 and +-Inf saturate to +-448; NaN
//               stays NaN (0x7F, with its sign); |x| <= 2^-10 (half the smallest subnormal,
//               a tie that goes to the even code) gives +-0
//
// A row of H elements is quantized in blocks of 128 (the last one partial when H % 128 != 0).
// Per block, amax is the largest |x| over its finite elements (NaN and +-Inf do not count):
//   fp32 scales   scale = amax / 448, inverse = 448 / amax; both 1 when amax is 0; 2^-126 and
//                 2^126 when 448 / amax overflows (amax < ~1.3e-36); q = to_e4m3(x * inverse);
//                 x ~ q * scale. A multiply per element (what the kernels can afford), one
//                 division per block.
//   ue8m0 scales  scale = 2^k, the smallest power of two >= amax / 448 (that quotient rounded to
//                 fp32; 2^-127 at least: what
//                 an E8M0 byte, k + 127, holds; 2^0 when amax is 0); q = to_e4m3(x * 2^-k)
// A block of zeros gives zero codes; a NaN element the NaN code with its sign (taken before the
// multiply, which need not keep it); an infinite one +-448.
#include <math.h>  // fabsf, ldexpf, rintf: the same names on host and device
#include <cstdint>
#include <cstring>

#include "epgraph/comm/host_device.hpp"

namespace epgraph::kernels::fp8 {

enum class scale_format : std::uint8_t { fp32 = 0, ue8m0 = 1 };

inline constexpr int block = 128;
inline constexpr float e4m3_max = 448.0f;

EPGRAPH_HD inline std::uint32_t bits_of(float x) {
  std::uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  return u;
}

/// NaN test on the bits (a NaN keeps its sign into its code; arithmetic need not keep it).
EPGRAPH_HD inline bool is_nan(float x) { return (bits_of(x) & 0x7fffffffu) > 0x7f800000u; }

/// Round to nearest even, saturating (see the header comment).
EPGRAPH_HD inline std::uint8_t to_e4m3(float x) {
  const std::uint32_t u = bits_of(x);
  const auto sign = static_cast<std::uint8_t>((u >> 24) & 0x80u);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<std::uint8_t>(sign | 0x7f);  // NaN
  const float a = fabsf(x);
  if (a >= e4m3_max) return static_cast<std::uint8_t>(sign | 0x7e);  // also +-Inf
  // The spacing of e4m3 values around a: 2^(e - 3) for a normal exponent e >= -6, else the
  // subnormal step 2^-9. a / spacing is exact (a power of two), rintf rounds it to even.
  const int e = static_cast<int>((bits_of(a) >> 23) & 0xffu) - 127;  // fp32 denormals: e = -127
  const int step = e < -6 ? -9 : e - 3;
  const float n = rintf(ldexpf(a, -step));  // 0 .. 16 steps
  if (step == -9) {  // subnormal codes 0..7; 8 steps is the smallest normal, code 0x08
    return static_cast<std::uint8_t>(sign | static_cast<std::uint8_t>(n));
  }
  // Normal: n in [8, 16]; 16 is the next exponent's 1.000.
  int exponent = e, mantissa = static_cast<int>(n) - 8;
  if (mantissa == 8) {
    ++exponent;
    mantissa = 0;
  }
  return static_cast<std::uint8_t>(sign | static_cast<std::uint8_t>(((exponent + 7) << 3) | mantissa));
}

EPGRAPH_HD inline float from_e4m3(std::uint8_t q) {
  const int exponent = (q >> 3) & 0xf, mantissa = q & 0x7;
  float a;
  if ((q & 0x7f) == 0x7f) {
    a = NAN;
  } else if (exponent == 0) {
    a = ldexpf(static_cast<float>(mantissa), -9);
  } else {
    a = ldexpf(static_cast<float>(8 + mantissa), exponent - 7 - 3);
  }
  return (q & 0x80) ? -a : a;
}

/// Largest |x| over the finite elements of x[0, n).
EPGRAPH_HD inline float block_amax(const float* x, int n) {
  float amax = 0.0f;
  for (int i = 0; i < n; ++i) {
    const float a = fabsf(x[i]);
    if (a > amax && (bits_of(a) & 0x7f800000u) != 0x7f800000u) amax = a;
  }
  return amax;
}

/// The E8M0 exponent k (scale 2^k) of a block: the smallest k >= -127 with 2^k >= amax / 448.
EPGRAPH_HD inline int ue8m0_exponent(float amax) {
  if (!(amax > 0.0f)) return 0;
  const float s = amax / e4m3_max;
  const std::uint32_t u = bits_of(s);
  const int biased = static_cast<int>((u >> 23) & 0xffu);
  int k;
  if (biased == 0) {  // s is an fp32 denormal, below 2^-126
    k = s <= ldexpf(1.0f, -127) ? -127 : -126;
  } else {
    k = biased - 127 + ((u & 0x7fffffu) != 0 ? 1 : 0);
  }
  return k < -127 ? -127 : k;
}

/// A block whose amax is so small that 448 / amax overflows (amax below ~1.3e-36) uses the
/// fixed pair 2^126 / 2^-126 instead: x * 2^126 stays below 448, and the pair stays exact.
EPGRAPH_HD inline bool tiny_amax(float amax) { return !(e4m3_max / amax <= 3.402823466e38f); }
/// The fp32 scale of a block (the dequantization multiplier) and its quantization multiplier.
EPGRAPH_HD inline float fp32_scale(float amax) {
  if (!(amax > 0.0f)) return 1.0f;
  return tiny_amax(amax) ? 1.1754943508e-38f /* 2^-126 */ : amax / e4m3_max;
}
EPGRAPH_HD inline float fp32_inverse_scale(float amax) {
  if (!(amax > 0.0f)) return 1.0f;
  return tiny_amax(amax) ? 8.5070591730e37f /* 2^126 */ : e4m3_max / amax;
}
/// 2^-k as a float, for k in [-127, 126] (the quantization multiplier of an E8M0 scale 2^k;
/// ue8m0_exponent gives k in [-127, 120] for a finite amax).
EPGRAPH_HD inline float exp2_negated(int k) {
  const std::uint32_t u = static_cast<std::uint32_t>(127 - k) << 23;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

/// Quantizes x[0, n) (one block) into q; returns the scale as the dequantization multiplier
/// (for ue8m0 it is 2^k, and *ue8m0_byte gets k + 127 when given).
EPGRAPH_HD inline float quantize_block(const float* x, int n, scale_format format, std::uint8_t* q,
                                       std::uint8_t* ue8m0_byte = nullptr) {
  const float amax = block_amax(x, n);
  if (format == scale_format::ue8m0) {
    const int k = ue8m0_exponent(amax);
    if (ue8m0_byte) *ue8m0_byte = static_cast<std::uint8_t>(k + 127);
    const float multiplier = exp2_negated(k);  // x * 2^-k: exact but for fp32 denormal results
    for (int i = 0; i < n; ++i) q[i] = to_e4m3(is_nan(x[i]) ? x[i] : x[i] * multiplier);
    return ldexpf(1.0f, k);
  }
  const float inverse = fp32_inverse_scale(amax);
  for (int i = 0; i < n; ++i) q[i] = to_e4m3(is_nan(x[i]) ? x[i] : x[i] * inverse);
  return fp32_scale(amax);
}

/// Blocks of a row of `hidden` elements (the last one partial when hidden % 128 != 0).
EPGRAPH_HD inline int blocks_of(int hidden) { return (hidden + block - 1) / block; }

}  // namespace epgraph::kernels::fp8
