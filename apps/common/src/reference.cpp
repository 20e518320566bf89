#include "epgraph/sim/reference.hpp"

#include <algorithm>
#include <cstring>

#include "epgraph/sim/fp8_reference.hpp"

namespace epgraph::sim {
namespace {

std::uint16_t float_to_half_bits(float f) {
  // Round-to-nearest-even float -> IEEE half (normal range and zero; values here are small).
  std::uint32_t x;
  std::memcpy(&x, &f, 4);
  const std::uint32_t sign = (x >> 16) & 0x8000u;
  const int exp = static_cast<int>((x >> 23) & 0xff) - 127 + 15;
  std::uint32_t mant = x & 0x7fffffu;
  if ((x & 0x7fffffffu) == 0) return static_cast<std::uint16_t>(sign);
  if (exp <= 0) {  // subnormal half
    if (exp < -10) return static_cast<std::uint16_t>(sign);
    mant |= 0x800000u;
    const int shift = 14 - exp;
    std::uint32_t half = mant >> shift;
    const std::uint32_t rem = mant & ((1u << shift) - 1), mid = 1u << (shift - 1);
    if (rem > mid || (rem == mid && (half & 1))) ++half;
    return static_cast<std::uint16_t>(sign | half);
  }
  if (exp >= 31) return static_cast<std::uint16_t>(sign | 0x7c00u);
  std::uint32_t half = (static_cast<std::uint32_t>(exp) << 10) | (mant >> 13);
  const std::uint32_t rem = mant & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (half & 1))) ++half;
  return static_cast<std::uint16_t>(sign | half);
}

float half_bits_to_float(std::uint16_t h) {
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
  int exp = (h >> 10) & 0x1f;
  std::uint32_t mant = h & 0x3ffu;
  std::uint32_t x;
  if (exp == 0) {
    if (mant == 0) {
      x = sign;
    } else {  // normalize
      exp = 1;
      while (!(mant & 0x400u)) {
        mant <<= 1;
        --exp;
      }
      mant &= 0x3ffu;
      x = sign | (static_cast<std::uint32_t>(exp - 15 + 127) << 23) | (mant << 13);
    }
  } else if (exp == 31) {
    x = sign | 0x7f800000u | (mant << 13);
  } else {
    x = sign | (static_cast<std::uint32_t>(exp - 15 + 127) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &x, 4);
  return f;
}

std::uint16_t float_to_bf16_bits(float f) {
  std::uint32_t x;
  std::memcpy(&x, &f, 4);
  const std::uint32_t rounding = 0x7fffu + ((x >> 16) & 1u);
  return static_cast<std::uint16_t>((x + rounding) >> 16);
}

float bf16_bits_to_float(std::uint16_t b) {
  const std::uint32_t x = static_cast<std::uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &x, 4);
  return f;
}

}  // namespace

void store_element(comm::element_type t, float x, void* dst) {
  std::uint16_t bits;
  switch (t) {
    case comm::element_type::bf16: bits = float_to_bf16_bits(x); std::memcpy(dst, &bits, 2); return;
    case comm::element_type::fp16: bits = float_to_half_bits(x); std::memcpy(dst, &bits, 2); return;
    case comm::element_type::fp32: std::memcpy(dst, &x, 4); return;
  }
}

float load_element(comm::element_type t, const void* src) {
  std::uint16_t bits;
  float f;
  switch (t) {
    case comm::element_type::bf16: std::memcpy(&bits, src, 2); return bf16_bits_to_float(bits);
    case comm::element_type::fp16: std::memcpy(&bits, src, 2); return half_bits_to_float(bits);
    case comm::element_type::fp32: std::memcpy(&f, src, 4); return f;
  }
  return 0.f;
}

float round_to(comm::element_type t, float x) {
  unsigned char bytes[4];
  store_element(t, x, bytes);
  return load_element(t, bytes);
}

routing_table draw_routing(const problem& p, std::uint64_t step) {
  routing_table r;
  r.tokens.resize(p.ep_size);
  r.ids.resize(p.ep_size);
  for (int src = 0; src < p.ep_size; ++src) {
    r.tokens[src] = token_count(p, src, step);
    for (int t = 0; t < r.tokens[src]; ++t)
      for (int j = 0; j < p.top_k; ++j) r.ids[src].push_back(expert_id(p, src, step, t, j));
  }
  return r;
}

namespace {
// The rank serving entry `e` of token t: by the placement's chosen replica, or the contiguous rule.
int serving_rank(const problem& p, const comm::expert_placement* placement, int e, int t) {
  if (!placement) return owner_rank(p, e);
  const std::int32_t id = comm::choose_replica(e, t, placement->replica_offsets.data(), placement->replica_ids.data());
  return placement->rank_of[static_cast<std::size_t>(id)];
}
}  // namespace

dispatch_expectation expect_dispatch(const problem& p, const routing_table& routes,
                                     const comm::expert_placement* placement) {
  const int ep = p.ep_size;
  dispatch_expectation e;
  e.counts.assign(ep, std::vector<int>(ep, 0));
  e.slot.resize(ep);
  e.origin.assign(ep, std::vector<std::vector<int>>(ep));
  for (int src = 0; src < ep; ++src) {
    const int tokens = std::min(std::max(routes.tokens[src], 0), p.max_tokens);
    e.slot[src].assign(tokens, std::vector<int>(ep, -1));
    for (int t = 0; t < tokens; ++t) {
      for (int j = 0; j < p.top_k; ++j) {
        const int id = routes.ids[src][static_cast<std::size_t>(t) * p.top_k + j];
        if (id < 0 || id >= p.num_experts) continue;
        const int dst = serving_rank(p, placement, id, t);
        if (e.slot[src][t][dst] >= 0) continue;  // one copy per destination rank
        e.slot[src][t][dst] = e.counts[dst][src]++;
        e.origin[dst][src].push_back(t);
      }
    }
  }
  return e;
}

std::vector<std::vector<expert_row>> expect_expert_major(const problem& p, const routing_table& routes,
                                                         const comm::expert_placement& placement, int rank) {
  std::vector<std::vector<expert_row>> rows(static_cast<std::size_t>(placement.local_slots));
  std::vector<expert_row> token_rows;
  for (int src = 0; src < p.ep_size; ++src) {
    const int tokens = std::min(std::max(routes.tokens[src], 0), p.max_tokens);
    int next_slot = 0;
    for (int t = 0; t < tokens; ++t) {
      token_rows.clear();
      std::vector<int> local_slots, named;
      for (int j = 0; j < p.top_k; ++j) {
        const int e = routes.ids[src][static_cast<std::size_t>(t) * p.top_k + j];
        if (e < 0 || e >= placement.num_experts) continue;
        if (std::find(named.begin(), named.end(), e) != named.end()) continue;  // a repeat: no row
        named.push_back(e);
        const std::int32_t id =
            comm::choose_replica(e, t, placement.replica_offsets.data(), placement.replica_ids.data());
        if (placement.rank_of[static_cast<std::size_t>(id)] != rank) continue;
        token_rows.push_back({src, -1, j});
        local_slots.push_back(placement.local_of[static_cast<std::size_t>(id)]);
      }
      if (token_rows.empty()) continue;
      const int slot = next_slot++;
      for (std::size_t i = 0; i < token_rows.size(); ++i) {
        token_rows[i].slot = slot;
        rows[static_cast<std::size_t>(local_slots[i])].push_back(token_rows[i]);
      }
    }
  }
  return rows;
}

std::vector<std::int64_t> packed_offsets(const std::vector<std::vector<expert_row>>& rows) {
  std::vector<std::int64_t> offsets(1, 0);
  for (const auto& r : rows) offsets.push_back(offsets.back() + static_cast<std::int64_t>(r.size()));
  return offsets;
}

std::vector<std::vector<std::vector<float>>> expect_unpermute(
    const std::vector<std::vector<expert_row>>& rows, const std::vector<std::vector<std::vector<float>>>& expert_out,
    const std::vector<int>& received, int hidden, bool weighted, const std::function<float(int, int, int)>& weight,
    comm::element_type out_type) {
  struct part {
    int entry;
    const std::vector<float>* out;
  };
  std::vector<std::vector<std::vector<part>>> parts(received.size());
  for (std::size_t src = 0; src < received.size(); ++src) parts[src].resize(static_cast<std::size_t>(received[src]));
  for (std::size_t s = 0; s < rows.size(); ++s)
    for (std::size_t i = 0; i < rows[s].size(); ++i) {
      const expert_row& r = rows[s][i];
      parts[static_cast<std::size_t>(r.src)][static_cast<std::size_t>(r.slot)].push_back({r.entry, &expert_out[s][i]});
    }
  std::vector<std::vector<std::vector<float>>> out(received.size());
  for (std::size_t src = 0; src < received.size(); ++src)
    for (std::size_t slot = 0; slot < parts[src].size(); ++slot) {
      auto& ps = parts[src][slot];
      std::sort(ps.begin(), ps.end(), [](const part& a, const part& b) { return a.entry < b.entry; });
      std::vector<float> sum(static_cast<std::size_t>(hidden), 0.0f);
      for (const part& pt : ps) {
        const float w = weighted ? weight(static_cast<int>(src), static_cast<int>(slot), pt.entry) : 1.0f;
        for (int h = 0; h < hidden; ++h) sum[static_cast<std::size_t>(h)] += w * (*pt.out)[static_cast<std::size_t>(h)];
      }
      for (float& x : sum) x = round_to(out_type, x);
      out[src].push_back(std::move(sum));
    }
  return out;
}

std::vector<float> expect_output(const problem& p, std::uint64_t step, int rank,
                                 const comm::expert_placement* placement) {
  const int tokens = token_count(p, rank, step);
  const std::size_t hidden = static_cast<std::size_t>(p.hidden);
  std::vector<float> out(static_cast<std::size_t>(tokens) * hidden);
  std::vector<int> experts(p.top_k), owners(p.top_k);
  std::vector<float> weights(p.top_k), x(hidden), partial(hidden), total(hidden);
  const auto round = [&](float v) { return round_to(p.dtype, v); };
  for (int t = 0; t < tokens; ++t) {
    for (int j = 0; j < p.top_k; ++j) {
      experts[j] = expert_id(p, rank, step, t, j);
      owners[j] = serving_rank(p, placement, experts[j], t);
      weights[j] = router_weight(p, rank, step, t, j);
    }
    for (std::size_t h = 0; h < hidden; ++h) x[h] = round(hidden_value(p, rank, step, t, static_cast<int>(h)));
    if (p.quantize) {  // the experts read what the quantizing dispatch delivered: code x scale
      const quantized_row q = reference_quantize_row(x, p.scales == kernels::fp8::scale_format::ue8m0);
      for (std::size_t h = 0; h < hidden; ++h) x[h] = mul_rn(reference_e4m3_value(q.codes[h]), q.scales[h / 128]);
    }
    std::fill(total.begin(), total.end(), 0.0f);
    for (int d = 0; d < p.ep_size; ++d) {  // ascending, as combine sums
      if (std::find(owners.begin(), owners.end(), d) == owners.end()) continue;
      // Rank d's partial row, as its expert stage writes it (entry order, rounded to dtype)...
      for (std::size_t h = 0; h < hidden; ++h) {
        float sum = 0.0f;
        for (int j = 0; j < p.top_k; ++j) {
          if (owners[j] != d) continue;
          // Source-major: one expert stage sums (weight x scale) x x; expert-major: each expert
          // row is scale x x in dtype, and the un-permute sums weight x row.
          const float term = p.expert_major ? mul_rn(weights[j], round(mul_rn(expert_scale(experts[j]), x[h])))
                                            : mul_rn(mul_rn(weights[j], expert_scale(experts[j])), x[h]);
          sum = add_rn(sum, term);
        }
        partial[h] = round(sum);
      }
      // ... as combine pulls it (prepare-combine reduced it to the combine precision) ...
      if (p.combine == kernels::combine_precision::fp8) {
        const quantized_row q = reference_quantize_row(partial, false);
        for (std::size_t h = 0; h < hidden; ++h) partial[h] = mul_rn(reference_e4m3_value(q.codes[h]), q.scales[h / 128]);
      } else if (p.combine == kernels::combine_precision::bf16) {
        for (float& v : partial) v = round_to(comm::element_type::bf16, v);
      }
      // ... added in fp32.
      for (std::size_t h = 0; h < hidden; ++h) total[h] = add_rn(total[h], partial[h]);
    }
    for (std::size_t h = 0; h < hidden; ++h) out[static_cast<std::size_t>(t) * hidden + h] = round(total[h]);
  }
  return out;
}

long long count_wrong(const problem& p, std::uint64_t step, int rank, const void* output,
                      const comm::expert_placement* placement) {
  const auto expected = expect_output(p, step, rank, placement);
  const auto* bytes = static_cast<const unsigned char*>(output);
  const std::size_t elem = comm::element_size(p.dtype);
  long long wrong = 0;
  for (std::size_t i = 0; i < expected.size(); ++i) wrong += load_element(p.dtype, bytes + i * elem) != expected[i];
  return wrong;
}

}  // namespace epgraph::sim
