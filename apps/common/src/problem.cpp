#include "epgraph/sim/problem.hpp"

#include <string>

#include "epgraph/comm/error.hpp"

namespace epgraph::sim {

std::string_view to_string(routing r) noexcept {
  switch (r) {
    case routing::uniform: return "uniform";
    case routing::skewed: return "skewed";
    case routing::one_rank: return "one-rank";
  }
  return "unknown";
}

routing parse_routing(std::string_view name) {
  for (auto r : {routing::uniform, routing::skewed, routing::one_rank})
    if (name == to_string(r)) return r;
  comm::throw_config_error("routing", "unknown distribution '" + std::string(name) + "'",
                           "use one of uniform, skewed, one-rank");
}

comm::ep_config make_config(const problem& p, int num_ctas, int threads_per_cta) {
  // What the batch's buffers and the references assume; the library checks the rest.
  if (p.quantize && p.dtype != comm::element_type::bf16)
    comm::throw_config_error("problem.quantize", "is set but dtype is " + std::string(comm::to_string(p.dtype)),
                             "the quantizing dispatch reads bf16 rows: use dtype bf16");
  if (p.quantize && p.hidden % 8 != 0)
    comm::throw_config_error("problem.quantize", "is set but hidden is " + std::to_string(p.hidden),
                             "use a multiple of 8");
  comm::ep_config c;
  c.ep_size = p.ep_size;
  c.domain_size = p.domain_size;
  c.max_tokens_per_rank = p.max_tokens;
  c.top_k = p.top_k;
  c.num_experts = p.num_experts;
  c.hidden = p.hidden;
  c.combine_type = p.dtype;
  c.payloads = {{"hidden", static_cast<std::size_t>(p.hidden) * comm::element_size(p.dtype)},
                {"weights", static_cast<std::size_t>(p.top_k) * sizeof(float)}};
  if (p.quantize) {
    const std::size_t scale_bytes = p.scales == kernels::fp8::scale_format::ue8m0 ? 1 : sizeof(float);
    c.payloads[0] = {"hidden_e4m3", static_cast<std::size_t>(p.hidden)};
    c.payloads.push_back({"scales_1x128", static_cast<std::size_t>(kernels::fp8::blocks_of(p.hidden)) * scale_bytes});
  }
  c.num_ctas = num_ctas;
  c.threads_per_cta = threads_per_cta;
  return c;
}

}  // namespace epgraph::sim
