#include "epgraph/sim/fp8_reference.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

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
        out.codes[i] = reference_e4m3(static_cast<float>(std::ldexp(static_cast<double>(row[i]), -k)));
    } else {
      const float scale = amax > 0.0f ? amax / 448.0f : 1.0f;
      out.scales.push_back(scale);
      for (std::size_t i = first; i < end; ++i) out.codes[i] = reference_e4m3(row[i] / scale);
    }
  }
  return out;
}

}  // namespace epgraph::sim
