#pragma once
// Division of a non-negative int by a divisor fixed at setup, as one 64-bit multiply and a
// shift. The kernels divide expert ids by experts_per_rank for every top-k entry; a hardware
// integer division is a long dependent sequence on the GPU (perf-notes v32).
//
// Method (round-up multiplier, Granlund and Montgomery 1994): for 0 <= n < 2^31 and d >= 1,
// with l = ceil(log2 d) and m = ceil(2^(31+l) / d), n / d == (n * m) >> (31 + l). The error
// m * d - 2^(31+l) is below d <= 2^l, which is what the method needs. m <= 2^32 (for d > 1,
// d > 2^(l-1)), so n * m < 2^63 fits 64 bits. Checked exhaustively for small divisors and at
// the edges in the unit tests.
#include <bit>
#include <cstdint>

#include "epgraph/comm/host_device.hpp"

namespace epgraph::comm {

struct fast_divisor {
  std::uint64_t multiplier = 1u << 31;  ///< the default divides by 1
  int shift = 31;

  /// d >= 1 (the caller validates; d < 1 gives the divisor 1).
  static constexpr fast_divisor of(int d) {
    const std::uint64_t divisor = d < 1 ? 1 : static_cast<std::uint64_t>(d);
    fast_divisor f;
    f.shift = 31 + static_cast<int>(std::bit_width(divisor - 1));  // 31 + ceil(log2 d)
    f.multiplier = ((std::uint64_t{1} << f.shift) + divisor - 1) / divisor;
    return f;
  }
  /// n / d for 0 <= n < 2^31.
  EPGRAPH_HD constexpr int divide(int n) const {
    return static_cast<int>((static_cast<std::uint64_t>(static_cast<std::uint32_t>(n)) * multiplier) >> shift);
  }
};

}  // namespace epgraph::comm
