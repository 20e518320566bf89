#include <cstdint>

#include "epgraph/sim/device.hpp"

namespace epgraph::sim {
namespace {
std::vector<std::size_t> payload_row_bytes(const problem& p) {
  std::vector<std::size_t> rows;
  for (const auto& payload : make_config(p).payloads) rows.push_back(payload.row_bytes);
  return rows;
}
}  // namespace

batch_storage::batch_storage(const problem& p)
    : dtype_(p.dtype),
      payload_row_bytes_(payload_row_bytes(p)),
      quantize_(p.quantize),
      scales_(p.scales),
      combine_(p.combine),
      num_tokens_(sizeof(std::int32_t)),
      ids_(static_cast<std::size_t>(p.max_tokens) * p.top_k * sizeof(std::int32_t)),
      weights_(static_cast<std::size_t>(p.max_tokens) * payload_row_bytes_.at(1)),
      hidden_(static_cast<std::size_t>(p.max_tokens) * p.hidden * comm::element_size(p.dtype)),  // bf16 with quantize
      output_(static_cast<std::size_t>(p.max_tokens) * p.hidden * comm::element_size(p.dtype)),
      inputs_{num_tokens_.as<std::int32_t>(), ids_.as<std::int32_t>(), weights_.as<float>(), hidden_.get()} {}

kernels::dispatch_args batch_storage::dispatch_args() const {
  if (quantize_)  // the hidden rows leave as codes (payload 0) and scales (payload 2)
    return {inputs_.num_tokens,
            inputs_.topk_ids,
            {{}, {inputs_.weights, payload_row_bytes_[1]}, {}},
            kernels::fp8_dispatch{inputs_.hidden, 0, 2, scales_}};
  return {inputs_.num_tokens,
          inputs_.topk_ids,
          {{inputs_.hidden, payload_row_bytes_[0]}, {inputs_.weights, payload_row_bytes_[1]}},
          std::nullopt};
}

kernels::combine_args batch_storage::combine_args() const {
  return {inputs_.num_tokens, output_.get(), dtype_, combine_};
}

}  // namespace epgraph::sim
