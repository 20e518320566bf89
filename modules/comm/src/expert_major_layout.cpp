#include "epgraph/comm/expert_major_layout.hpp"

#include <algorithm>
#include <climits>
#include <string>

#include "epgraph/comm/error.hpp"
#include "region_builder.hpp"

namespace epgraph::comm {

expert_major_layout plan_expert_major(const ep_config& c, const expert_major_spec& spec) {
  validate(c);
  const std::size_t received = static_cast<std::size_t>(c.ep_size) * static_cast<std::size_t>(c.max_tokens_per_rank);
  const int slots = spec.local_slots > 0 ? spec.local_slots : c.local_slots();
  if (spec.local_slots < 0 || spec.local_slots > c.num_experts)
    throw_config_error("expert_major_spec.local_slots",
                       "is " + std::to_string(spec.local_slots) + ", outside [0, num_experts = " +
                           std::to_string(c.num_experts) + "]",
                       "pass 0 for the session's slots per rank (ep_config::local_slots)");
  if (spec.capacity < 0 || spec.capacity > max_tokens_limit * max_ep_size)
    throw_config_error("expert_major_spec.capacity",
                       "is " + std::to_string(spec.capacity) + ", outside [0, " +
                           std::to_string(static_cast<long long>(max_tokens_limit) * max_ep_size) + "]",
                       "0 sizes each slot for every token a rank can receive");
  if (spec.form != expert_major_form::packed && spec.form != expert_major_form::masked)
    throw_config_error("expert_major_spec.form", "is " + std::to_string(static_cast<int>(spec.form)),
                       "use expert_major_form::packed or masked");
  expert_major_layout l;
  l.form = spec.form;
  l.local_slots = slots;
  l.copy_rows = spec.copy_rows;
  if (spec.form == expert_major_form::masked) {
    l.capacity = spec.capacity > 0 ? static_cast<std::size_t>(spec.capacity) : received;
    l.rows = static_cast<std::size_t>(slots) * l.capacity;
    if (l.capacity != 0 && l.rows / l.capacity != static_cast<std::size_t>(slots))
      throw_config_error("expert_major_spec.capacity", "times " + std::to_string(slots) + " slots overflows size_t");
  } else {
    l.rows = received * static_cast<std::size_t>(std::min(c.top_k, slots));
  }
  // Kernels index rows and scan the routed rows (before a masked cap) in int32.
  const std::size_t routed = received * static_cast<std::size_t>(std::min(c.top_k, slots));
  if (std::max(l.rows, routed) > static_cast<std::size_t>(INT_MAX))
    throw_config_error("expert_major_spec",
                       "needs " + std::to_string(std::max(l.rows, routed)) + " rows, more than 2^31 - 1",
                       "lower the masked capacity, max_tokens_per_rank or the ranks per session");
  detail::region_builder b(c);
  l.num_payloads = static_cast<int>(c.payloads.size());
  for (int i = 0; i < l.num_payloads; ++i) l.payloads[i] = b.add(spec.copy_rows ? l.rows : 0, c.payloads[i].row_bytes);
  l.output = b.add(l.rows, static_cast<std::size_t>(c.hidden) * element_size(c.combine_type));
  l.origins = b.add(l.rows, 3, sizeof(std::int32_t));
  l.weights = b.add(spec.weights ? l.rows : 0, sizeof(float));
  l.receive_rows = b.add(spec.copy_rows ? 0 : l.rows, sizeof(std::int32_t));
  l.counts = b.add(static_cast<std::size_t>(slots), sizeof(std::int32_t));
  l.offsets = b.add(static_cast<std::size_t>(slots) + 1, sizeof(std::int64_t));
  l.demand = b.add(static_cast<std::size_t>(slots), sizeof(std::int32_t));
  l.dropped = b.add(1, sizeof(std::uint64_t));
  l.entry_rows = b.add(received, static_cast<std::size_t>(c.top_k), sizeof(std::int32_t));
  l.chunks = c.ep_size * ((c.max_tokens_per_rank + expert_major_chunk_rows - 1) / expert_major_chunk_rows);
  l.inline_scan = l.chunks <= expert_major_inline_scan_chunks && slots <= expert_major_inline_scan_slots &&
                  l.chunks * slots <= expert_major_inline_scan_counts;
  l.chunk_counts = b.add(static_cast<std::size_t>(slots), static_cast<std::size_t>(l.chunks), sizeof(std::int32_t));
  l.chunk_starts = b.add(l.inline_scan ? 0 : static_cast<std::size_t>(slots), static_cast<std::size_t>(l.chunks),
                         sizeof(std::int32_t));
  l.bytes = b.total(region_alignment);
  return l;
}

}  // namespace epgraph::comm
