#pragma once
#include "epgraph/comm/requires_cxx20.hpp"
// Where experts live: the table a session with ep_config::expert_slots_per_rank > 0 keeps on
// the device and ep_session::set_placement replaces (its device form: session_view.hpp,
// placement_ref).
//
// Routing names logical experts [0, num_experts). Each logical expert has one or more physical
// replicas; each replica lives on one rank at one local index (its slot in that rank's expert
// stage). The default is today's rule: logical expert e is the one replica on rank
// e / experts_per_rank at local index e % experts_per_rank. A load balancer (EPLB) may place
// experts elsewhere and replicate hot ones; the table then moves between replays as a device
// copy (set_placement: a checked collective update), never by recapture.
//
// A token's replica of a logical expert is chosen by its token index (token % replicas), so the
// choice is deterministic and spreads a hot expert's tokens over its replicas evenly.
//
// Pure host code: no GPU, no communication. validate_placement() throws a config error naming
// the offending entry and what to change.
#include <cstdint>
#include <vector>

#include "epgraph/comm/host_device.hpp"

namespace epgraph::comm {

struct ep_config;

/// The table in the flat form a kernel reads (CSR over logical experts):
///   replicas of logical expert e: physical ids replica_ids[replica_offsets[e] .. replica_offsets[e+1])
///   physical expert p: on rank rank_of[p], at local index local_of[p]
struct expert_placement {
  int num_experts = 0;                      ///< logical experts (routing ids)
  int local_slots = 0;                      ///< expert slots per rank (the expert stage's size)
  std::vector<std::int32_t> replica_offsets;  ///< [num_experts + 1], ascending, [0] = 0
  std::vector<std::int32_t> replica_ids;      ///< [replica_offsets.back()] physical ids
  std::vector<std::int32_t> rank_of;          ///< [physical experts]
  std::vector<std::int32_t> local_of;         ///< [physical experts]

  int num_physical() const noexcept { return static_cast<int>(rank_of.size()); }
};

/// Today's rule: num_experts / ep_size experts per rank, contiguous, one replica each.
expert_placement contiguous_placement(int num_experts, int ep_size);
/// The default placement of a config (contiguous_placement of its experts and ranks).
expert_placement default_placement(const ep_config& config);

/// Throws a config error naming the first problem: sizes that do not match, a logical expert
/// without a replica, a physical id out of range or used twice, a rank outside [0, ep_size),
/// a local index outside [0, local_slots) or two physical experts in one slot of one rank.
void validate_placement(const expert_placement& placement, int ep_size);

/// The physical expert that token `token` (its index on its source rank, >= 0) uses for logical
/// expert `expert` (deterministic: token % replicas). Host and device; the arrays are the
/// placement's.
EPGRAPH_HD inline std::int32_t choose_replica(std::int32_t expert, std::int32_t token,
                                              const std::int32_t* replica_offsets, const std::int32_t* replica_ids) {
  const std::int32_t first = replica_offsets[expert];
  const std::int32_t count = replica_offsets[expert + 1] - first;
  return replica_ids[first + static_cast<std::int32_t>(static_cast<std::uint32_t>(token) %
                                                       static_cast<std::uint32_t>(count))];
}

/// Tokens each rank would receive per local slot for a routing (host reference of the load
/// statistics): result[rank][slot]. topk_ids: [tokens][top_k] logical ids, -1 = unused entry;
/// a token routed twice to replicas on one rank counts once per slot it reaches.
std::vector<std::vector<std::int64_t>> slot_loads(const expert_placement& placement, int ep_size,
                                                  const std::vector<std::int32_t>& topk_ids, int top_k);

}  // namespace epgraph::comm
