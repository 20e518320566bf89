#include "epgraph/comm/expert_placement.hpp"

#include <algorithm>
#include <string>

#include "epgraph/comm/ep_config.hpp"
#include "epgraph/comm/error.hpp"

namespace epgraph::comm {
namespace {

std::string at(const char* field, std::size_t i) { return std::string(field) + "[" + std::to_string(i) + "]"; }

}  // namespace

expert_placement contiguous_placement(int num_experts, int ep_size) {
  if (ep_size <= 0 || num_experts <= 0 || num_experts % ep_size != 0)
    throw_config_error("num_experts", "is " + std::to_string(num_experts) + " for " + std::to_string(ep_size) +
                                          " ranks; the contiguous placement needs a positive multiple of the ranks");
  expert_placement p;
  p.num_experts = num_experts;
  p.local_slots = num_experts / ep_size;
  for (int e = 0; e <= num_experts; ++e) p.replica_offsets.push_back(e);
  for (int e = 0; e < num_experts; ++e) {
    p.replica_ids.push_back(e);
    p.rank_of.push_back(e / p.local_slots);
    p.local_of.push_back(e % p.local_slots);
  }
  return p;
}

expert_placement default_placement(const ep_config& config) {
  return contiguous_placement(config.num_experts, config.ep_size);
}

void validate_placement(const expert_placement& p, int ep_size) {
  const std::string hint = "build the table with contiguous_placement() and move or replicate experts from there";
  if (p.num_experts <= 0)
    throw_config_error("placement.num_experts", "is " + std::to_string(p.num_experts) + ", must be positive", hint);
  if (p.local_slots <= 0)
    throw_config_error("placement.local_slots", "is " + std::to_string(p.local_slots) + ", must be positive", hint);
  if (p.replica_offsets.size() != static_cast<std::size_t>(p.num_experts) + 1 || p.replica_offsets.front() != 0)
    throw_config_error("placement.replica_offsets",
                       "has " + std::to_string(p.replica_offsets.size()) + " entries; it needs num_experts + 1 = " +
                           std::to_string(p.num_experts + 1) + ", starting at 0",
                       hint);
  for (int e = 0; e < p.num_experts; ++e)
    if (p.replica_offsets[e + 1] <= p.replica_offsets[e])
      throw_config_error(at("placement.replica_offsets", e + 1),
                         "gives logical expert " + std::to_string(e) + " no replica (offsets must rise)", hint);
  if (static_cast<std::size_t>(p.replica_offsets.back()) != p.replica_ids.size())
    throw_config_error("placement.replica_ids",
                       "has " + std::to_string(p.replica_ids.size()) + " entries but replica_offsets ends at " +
                           std::to_string(p.replica_offsets.back()),
                       hint);
  if (p.rank_of.size() != p.local_of.size())
    throw_config_error("placement.local_of",
                       "has " + std::to_string(p.local_of.size()) + " entries but rank_of has " +
                           std::to_string(p.rank_of.size()),
                       hint);
  const int physical = p.num_physical();
  std::vector<int> used(static_cast<std::size_t>(physical), -1);  // the logical expert of each physical one
  for (int e = 0; e < p.num_experts; ++e)
    for (std::int32_t i = p.replica_offsets[e]; i < p.replica_offsets[e + 1]; ++i) {
      const std::int32_t id = p.replica_ids[static_cast<std::size_t>(i)];
      if (id < 0 || id >= physical)
        throw_config_error(at("placement.replica_ids", static_cast<std::size_t>(i)),
                           "is " + std::to_string(id) + ", outside [0, " + std::to_string(physical) + ")", hint);
      if (used[static_cast<std::size_t>(id)] >= 0)
        throw_config_error(at("placement.replica_ids", static_cast<std::size_t>(i)),
                           "uses physical expert " + std::to_string(id) + " again (already a replica of logical expert " +
                               std::to_string(used[static_cast<std::size_t>(id)]) + ")",
                           hint);
      used[static_cast<std::size_t>(id)] = e;
    }
  std::vector<int> slot_owner(static_cast<std::size_t>(ep_size) * p.local_slots, -1);
  for (int id = 0; id < physical; ++id) {
    const auto i = static_cast<std::size_t>(id);
    if (used[i] < 0)
      throw_config_error(at("placement.rank_of", i),
                         "belongs to physical expert " + std::to_string(id) + ", which no logical expert uses", hint);
    if (p.rank_of[i] < 0 || p.rank_of[i] >= ep_size)
      throw_config_error(at("placement.rank_of", i),
                         "is " + std::to_string(p.rank_of[i]) + ", outside [0, " + std::to_string(ep_size) + ")", hint);
    if (p.local_of[i] < 0 || p.local_of[i] >= p.local_slots)
      throw_config_error(at("placement.local_of", i),
                         "is " + std::to_string(p.local_of[i]) + ", outside [0, " + std::to_string(p.local_slots) + ")",
                         hint);
    int& owner = slot_owner[static_cast<std::size_t>(p.rank_of[i]) * p.local_slots + p.local_of[i]];
    if (owner >= 0)
      throw_config_error(at("placement.local_of", i),
                         "puts physical expert " + std::to_string(id) + " into slot " + std::to_string(p.local_of[i]) +
                             " of rank " + std::to_string(p.rank_of[i]) + ", which physical expert " +
                             std::to_string(owner) + " already holds",
                         hint);
    owner = id;
  }
}

std::vector<std::vector<std::int64_t>> slot_loads(const expert_placement& p, int ep_size,
                                                  const std::vector<std::int32_t>& topk_ids, int top_k) {
  std::vector<std::vector<std::int64_t>> load(static_cast<std::size_t>(ep_size),
                                              std::vector<std::int64_t>(static_cast<std::size_t>(p.local_slots), 0));
  const std::size_t tokens = top_k > 0 ? topk_ids.size() / static_cast<std::size_t>(top_k) : 0;
  std::vector<std::int32_t> seen;
  for (std::size_t t = 0; t < tokens; ++t) {
    seen.clear();
    for (int k = 0; k < top_k; ++k) {
      const std::int32_t e = topk_ids[t * static_cast<std::size_t>(top_k) + static_cast<std::size_t>(k)];
      if (e < 0 || e >= p.num_experts) continue;  // unused entry (or invalid: dispatch skips it)
      const std::int32_t id =
          choose_replica(e, static_cast<std::int32_t>(t), p.replica_offsets.data(), p.replica_ids.data());
      if (std::find(seen.begin(), seen.end(), id) != seen.end()) continue;  // one row per physical expert
      seen.push_back(id);
      ++load[static_cast<std::size_t>(p.rank_of[static_cast<std::size_t>(id)])]
            [static_cast<std::size_t>(p.local_of[static_cast<std::size_t>(id)])];
    }
  }
  return load;
}

}  // namespace epgraph::comm
