#include "epgraph/sim/fp8_reference.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>

namespace epgraph::sim {

float reference_e4m3_value(std::uint8_t code) {
  const int magnitude = code & 0x7f;
  if (magnitude == 0x7f) return std::numeric_limits<float>::quiet_NaN();
  const int exponent_field = magnitude >> 3, mantissa = magnitude & 7;
  double value;
  if (exponent_field == 0) {
    value = mantissa / 512.0;  // subnormal: mantissa x 2^-9
  } else {
    value = 1.0 + mantissa / 8.0;
    for (int e = exponent_field - 7; e > 0; --e) value *= 2.0;
    for (int e = exponent_field - 7; e < 0; ++e) value /= 2.0;
  }
  return static_cast<float>((code & 0x80) ? -value : value);
}

std::uint8_t reference_e4m3(float x) {
  const std::uint8_t sign = std::signbit(x) ? 0x80 : 0x00;
  if (std::isnan(x)) return static_cast<std::uint8_t>(sign | 0x7f);
  const double a = std::fabs(static_cast<double>(x));
  if (a >= 448.0) return static_cast<std::uint8_t>(sign | 0x7e);
  int best = 0;
  double best_distance = a;
  for (int code = 1; code <= 0x7e; ++code) {
    const double d = std::fabs(reference_e4m3_value(static_cast<std::uint8_t>(code)) - a);
    if (d < best_distance || (d == best_distance && code % 2 == 0 && best % 2 == 1)) {
      best = code;
      best_distance = d;
    }
  }
  return static_cast<std::uint8_t>(sign | best);
}

quantized_row reference_quantize_row(const std::vector<float>& row, bool ue8m0) {
  quantized_row out;
  out.codes.resize(row.size());
  for (std::size_t first = 0; first < row.size(); first += 128) {
    const std::size_t end = std::min(row.size(), first + 128);
    float amax = 0.0f;
    for (std::size_t i = first; i < end; ++i)
      if (std::isfinite(row[i])) amax = std::max(amax, std::fabs(row[i]));
    if (ue8m0) {
      const float s = amax / 448.0f;
      int k = 0;
      if (amax > 0.0f) {
        k = -127;
        while (std::ldexp(1.0, k) < static_cast<double>(s)) ++k;
      }
      out.ue8m0.push_back(static_cast<std::uint8_t>(k + 127));
      out.scales.push_back(static_cast<float>(std::ldexp(1.0, k)));
      for (std::size_t i = first; i < end; ++i)
        out.codes[i] = reference_e4m3(std::isnan(row[i]) ? row[i]
                                                         : static_cast<float>(std::ldexp(static_cast<double>(row[i]), -k)));
    } else {
      // The quantization multiplier 448 / amax, one fp32 rounding, and the scale amax / 448;
      // where 448 / amax overflows, the exact pair 2^126 and 2^-126.
      float inverse = 1.0f, scale = 1.0f;
      if (amax > 0.0f) {
        inverse = 448.0f / amax;
        scale = amax / 448.0f;
        if (std::isinf(inverse)) {
          inverse = std::ldexp(1.0f, 126);
          scale = std::ldexp(1.0f, -126);
        }
      }
      out.scales.push_back(scale);
      for (std::size_t i = first; i < end; ++i) out.codes[i] = reference_e4m3(std::isnan(row[i]) ? row[i] : row[i] * inverse);
    }
  }
  return out;
}

float bf16_value(std::uint16_t bits) {
  const std::uint32_t u = static_cast<std::uint32_t>(bits) << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

namespace {
std::uint16_t to_bf16_bits(float x) {  // truncation: the test rows only need some bf16 value
  std::uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  return static_cast<std::uint16_t>(u >> 16);
}
}  // namespace

std::vector<std::uint16_t> bf16_test_row(int hidden, std::uint64_t seed, int row) {
  std::mt19937_64 rng(seed * 1000003u + static_cast<std::uint64_t>(row));
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_int_distribution<int> pick(0, 63);
  std::vector<std::uint16_t> out(static_cast<std::size_t>(hidden));
  const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
  for (int i = 0; i < hidden; ++i) {
    float x = normal(rng);
    if (pick(rng) == 0) x *= 40.0f;  // outliers
    switch (row % 5) {
      case 1:
        if (i < 8) x = std::array<float, 8>{nan, -nan, inf, -inf, 1e-40f, -3e-39f, -0.0f, 448.0f * 3}[i];
        break;
      case 2: x = (i % 3 == 0) ? (i % 2 ? -0.0f : 0.0f) : x * 1e-39f; break;  // fp32 denormals
      case 3: if (i < 128) x = 0.0f; break;
      case 4: x = std::clamp(x * 1e37f, -3.3e38f, 3.3e38f); break;  // near the largest bf16 (3.39e38)
      default: break;
    }
    out[static_cast<std::size_t>(i)] = to_bf16_bits(x);
  }
  return out;
}

}  // namespace epgraph::sim
