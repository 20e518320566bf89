#pragma once
// A synthetic MoE problem whose every value is a pure function of (seed, rank, step, token,
// ...), evaluated identically on host and device: the device draws each batch, the host
// recomputes the same batch for its reference without copying inputs back.
//
// Values are chosen so that the reference experts are exact in bf16 (hidden values are
// multiples of 1/8 in [-1, 1], expert scales multiples of 1/8 in [1, 2)), and the host
// reference uses the device's fp32 operation order, so checks can be bit-exact.

#include <cstdint>
#include <string_view>

#include "epgraph/comm/ep_config.hpp"
#include "epgraph/comm/host_device.hpp"
#include "epgraph/kernels/launch_params.hpp"

namespace epgraph::sim {

enum class routing : int { uniform = 0, skewed = 1, one_rank = 2 };
std::string_view to_string(routing r) noexcept;
routing parse_routing(std::string_view name);  ///< "uniform", "skewed", "one-rank"

struct problem {
  std::uint64_t seed = 1;
  int ep_size = 1;
  int max_tokens = 128;
  int top_k = 8;
  int num_experts = 256;
  int hidden = 7168;
  comm::element_type dtype = comm::element_type::bf16;  ///< hidden, expert output and combine output
  routing dist = routing::uniform;
  int min_tokens = 0;  ///< token counts are drawn from [min_tokens, max_tokens]
  std::uint64_t empty_ranks = 0;  ///< bit r set: rank r has no tokens in any step
  int domain_size = 0;            ///< ranks per NVLink domain (ep_config::domain_size; 0 = NCCL's NVLink team)
  /// Dispatch quantizes the bf16 hidden rows (kernels::fp8_dispatch): payload 0 carries e4m3
  /// codes, payload 2 the 1x128 block scales in `scales`; the reference experts read code x
  /// scale. Needs dtype bf16 and hidden % 8 == 0.
  bool quantize = false;
  kernels::fp8::scale_format scales = kernels::fp8::scale_format::fp32;
  /// What combine pulls (kernels::combine_precision): fp8 needs dtype bf16, bf16 needs fp32.
  kernels::combine_precision combine = kernels::combine_precision::exact;
  /// The step is expert-major: the reference experts write scale(e) * x per (token, expert),
  /// rounded to dtype, and the weighted un-permute sums weight x that. The references follow
  /// (with exact hidden values both orders give the same bits; with quantized ones not).
  bool expert_major = false;
};

EPGRAPH_HD inline std::uint32_t mix(std::uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ull;
  x ^= x >> 33;
  return static_cast<std::uint32_t>(x);
}

EPGRAPH_HD inline std::uint32_t draw(const problem& p, int rank, std::uint64_t step, std::uint64_t a, std::uint64_t b = 0) {
  return mix(p.seed * 0x9e3779b97f4a7c15ull ^ mix((static_cast<std::uint64_t>(rank) << 48) ^ (step << 20) ^
                                                  mix(a * 0x100000001b3ull ^ b)));
}

EPGRAPH_HD inline int token_count(const problem& p, int rank, std::uint64_t step) {
  if ((p.empty_ranks >> rank) & 1) return 0;
  const int span = p.max_tokens - p.min_tokens + 1;
  return p.min_tokens + static_cast<int>(draw(p, rank, step, 0xC0FFEE) % static_cast<std::uint32_t>(span));
}

/// Expert of top-k entry j of a token; distinct within the token.
EPGRAPH_HD inline int expert_id(const problem& p, int rank, std::uint64_t step, int token, int j) {
  int chosen[32];
  const int per_rank = p.num_experts / p.ep_size;
  for (int i = 0; i <= j; ++i) {
    int e = 0;
    for (int attempt = 0;; ++attempt) {
      const std::uint32_t h = draw(p, rank, step, 1 + static_cast<std::uint64_t>(token), (i << 8) | attempt);
      if (p.dist == routing::one_rank) {
        e = static_cast<int>(h % static_cast<std::uint32_t>(per_rank));  // all on rank 0
      } else if (p.dist == routing::skewed) {
        const float u = (h >> 8) * (1.0f / 16777216.0f);
        e = static_cast<int>(u * u * u * static_cast<float>(p.num_experts));
      } else {
        e = static_cast<int>(h % static_cast<std::uint32_t>(p.num_experts));
      }
      if (attempt > 64) e = (e + attempt) % p.num_experts;  // guarantee progress
      bool taken = false;
      for (int q = 0; q < i; ++q) taken = taken || chosen[q] == e;
      if (!taken) break;
    }
    chosen[i] = e;
  }
  return chosen[j];
}

/// Router weight of entry j: a multiple of 1/16 in [1/16, 1].
EPGRAPH_HD inline float router_weight(const problem& p, int rank, std::uint64_t step, int token, int j) {
  return static_cast<float>(1 + draw(p, rank, step, 0xABCDull + token, j) % 16) * (1.0f / 16.0f);
}

/// Hidden element h of a token: a multiple of 1/8 in [-1, 1].
EPGRAPH_HD inline float hidden_value(const problem& p, int rank, std::uint64_t step, int token, int h) {
  return static_cast<float>(static_cast<int>(draw(p, rank, step, 0x5EEDull + token, h) % 17) - 8) * 0.125f;
}

/// Byte b of row `row` of an opaque payload filled with pattern `seed` (fill_pattern).
EPGRAPH_HD inline std::uint8_t pattern_byte(std::uint64_t seed, std::uint64_t row, std::uint64_t byte) {
  return static_cast<std::uint8_t>(mix(seed * 0x9e3779b97f4a7c15ull ^ (row << 24) ^ byte) >> 7);
}

/// The reference expert e computes scale(e) * x.
EPGRAPH_HD inline float expert_scale(int e) { return 1.0f + static_cast<float>(e % 8) * 0.125f; }

EPGRAPH_HD inline int owner_rank(const problem& p, int expert) { return expert / (p.num_experts / p.ep_size); }

// fp32 ops rounded one by one, never contracted into FMAs, so host and device agree: the
// device by the _rn intrinsics, the host by -ffp-contract=off (apps/common/CMakeLists.txt).
EPGRAPH_HD inline float mul_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}
EPGRAPH_HD inline float add_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}

/// Expected combine output for one element x of a token with these experts and weights:
/// per rank (ascending, as combine sums) the reference experts' fp32 partial in entry order
/// (as the expert stage sums), rounded to the dtype by `round`; those summed in fp32; rounded.
/// owners[j]: the rank that serves entry j (owner_rank by the contiguous rule; with a
/// placement table, the rank of the replica the token chose).
template <class Round>
EPGRAPH_HD inline float expected_output(const problem& p, const int* experts, const int* owners, const float* weights,
                                        float x, Round round) {
  float total = 0.f;
  for (int d = 0; d < p.ep_size; ++d) {
    bool routed = false;
    float partial = 0.f;
    for (int j = 0; j < p.top_k; ++j) {
      if (owners[j] != d) continue;
      routed = true;
      partial = add_rn(partial, mul_rn(mul_rn(weights[j], expert_scale(experts[j])), x));
    }
    if (routed) total = add_rn(total, round(partial));
  }
  return round(total);
}
template <class Round>
EPGRAPH_HD inline float expected_output(const problem& p, const int* experts, const float* weights, float x, Round round) {
  int owners[32];
  for (int j = 0; j < p.top_k; ++j) owners[j] = owner_rank(p, experts[j]);
  return expected_output(p, experts, owners, weights, x, round);
}

/// The session config that carries this problem: payload 0 = hidden rows (quantize: e4m3
/// codes), 1 = fp32 weights, and with quantize 2 = the block scales.
comm::ep_config make_config(const problem& p, int num_ctas = 64, int threads_per_cta = 512);

}  // namespace epgraph::sim
