#pragma once
// The placement table as the kernels read it (session_view::placement, layout.placement):
// private to comm.
#include <cstdint>
#include <vector>

#include "epgraph/comm/ep_config.hpp"
#include "epgraph/comm/expert_placement.hpp"

namespace epgraph::comm::detail {

/// The contiguous rule as a table with the config's slots per rank (slots past
/// experts_per_rank stay empty).
expert_placement initial_placement(const ep_config& config);

/// Throws a config error unless `placement` fits the session's config (its experts, its slots
/// per rank, at most ep_size x slots physical ids) and is valid (validate_placement).
void check_placement_fits(const expert_placement& placement, const ep_config& config);

/// The words of layout.placement: replica_offsets [E + 1], then replica_ids, rank_of, local_of,
/// logical_of, slot_expert, each [ep_size x slots] (unused entries -1). The placement must fit
/// (check_placement_fits).
std::vector<std::int32_t> flatten(const expert_placement& placement, const ep_config& config);

/// FNV-1a over the flat words: what the ranks compare before a table is used.
std::uint64_t placement_hash(const std::vector<std::int32_t>& flat);

}  // namespace epgraph::comm::detail
