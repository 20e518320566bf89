#pragma once
// An independent host reference of the FP8 e4m3 block quantizer (epgraph/kernels/fp8_quantize.hpp),
// written from the rules in that header's comment rather than from its code: e4m3 by
// searching every code for the nearest value (ties to the even code), powers of two by
// counting. Slow; for tests.
#include <cstdint>
#include <vector>

namespace epgraph::sim {

/// The value of an e4m3 code (NaN for 0x7F / 0xFF).
float reference_e4m3_value(std::uint8_t code);
/// The e4m3 code of x: nearest value, ties to the even code; saturating at +-448; NaN kept.
std::uint8_t reference_e4m3(float x);

struct quantized_row {
  std::vector<std::uint8_t> codes;       ///< [hidden]
  std::vector<float> scales;             ///< [blocks]: the dequantization multiplier of each block
  std::vector<std::uint8_t> ue8m0;       ///< [blocks]: k + 127 (ue8m0 only)
};
/// Quantizes a row in blocks of 128 (the last one partial); ue8m0: power-of-two scales.
quantized_row reference_quantize_row(const std::vector<float>& row, bool ue8m0);

/// bf16 (the top half of an fp32) and back, exactly.
float bf16_value(std::uint16_t bits);
/// Row `row` of a deterministic bf16 test matrix of `hidden` elements: hidden-state-like draws
/// (N(0, 1) with outliers), and by row: NaN of both signs, +-Inf and fp32 denormals in the
/// first block (row % 5 == 1), a row of denormals and signed zeros only (2), a zero block
/// (3), values near the largest bf16 (4). The same (hidden, seed, row) gives the same row.
std::vector<std::uint16_t> bf16_test_row(int hidden, std::uint64_t seed, int row);

}  // namespace epgraph::sim
