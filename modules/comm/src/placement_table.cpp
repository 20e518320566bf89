#include "placement_table.hpp"

#include <string>

#include "epgraph/comm/error.hpp"

namespace epgraph::comm::detail {

expert_placement initial_placement(const ep_config& config) {
  expert_placement p = default_placement(config);
  p.local_slots = config.local_slots();
  return p;
}

void check_placement_fits(const expert_placement& p, const ep_config& c) {
  if (!c.placement_table())
    throw_config_error("ep_config.expert_slots_per_rank", "is 0: this session places experts by the contiguous rule",
                       "create the session with expert_slots_per_rank > 0 to keep a placement table");
  if (p.num_experts != c.num_experts)
    throw_config_error("placement.num_experts",
                       "is " + std::to_string(p.num_experts) + " but the session routes " +
                           std::to_string(c.num_experts) + " experts");
  if (p.local_slots != c.local_slots())
    throw_config_error("placement.local_slots",
                       "is " + std::to_string(p.local_slots) + " but the session has " +
                           std::to_string(c.local_slots()) + " expert slots per rank (expert_slots_per_rank)");
  if (p.num_physical() > c.physical_experts())
    throw_config_error("placement.rank_of",
                       "has " + std::to_string(p.num_physical()) + " physical experts, more than ep_size x slots = " +
                           std::to_string(c.physical_experts()));
  validate_placement(p, c.ep_size);
}

std::vector<std::int32_t> flatten(const expert_placement& p, const ep_config& c) {
  const auto physical = static_cast<std::size_t>(c.physical_experts());
  std::vector<std::int32_t> flat(p.replica_offsets.begin(), p.replica_offsets.end());
  auto append = [&](const std::vector<std::int32_t>& part) {
    for (std::size_t i = 0; i < physical; ++i) flat.push_back(i < part.size() ? part[i] : -1);
  };
  std::vector<std::int32_t> logical_of(static_cast<std::size_t>(p.num_physical()), -1);
  for (int e = 0; e < p.num_experts; ++e)
    for (std::int32_t i = p.replica_offsets[static_cast<std::size_t>(e)]; i < p.replica_offsets[static_cast<std::size_t>(e) + 1]; ++i)
      logical_of[static_cast<std::size_t>(p.replica_ids[static_cast<std::size_t>(i)])] = e;
  std::vector<std::int32_t> slot_expert(physical, -1);
  for (std::size_t id = 0; id < logical_of.size(); ++id)
    slot_expert[static_cast<std::size_t>(p.rank_of[id]) * static_cast<std::size_t>(p.local_slots) +
                static_cast<std::size_t>(p.local_of[id])] = logical_of[id];
  append(p.replica_ids);
  append(p.rank_of);
  append(p.local_of);
  append(logical_of);
  append(slot_expert);
  return flat;
}

std::uint64_t placement_hash(const std::vector<std::int32_t>& flat) {
  std::uint64_t h = 1469598103934665603ull;
  for (std::int32_t w : flat)
    for (int b = 0; b < 4; ++b) {
      h ^= (static_cast<std::uint32_t>(w) >> (8 * b)) & 0xffu;
      h *= 1099511628211ull;
    }
  return h;
}

}  // namespace epgraph::comm::detail
