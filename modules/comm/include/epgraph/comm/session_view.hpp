#pragma once
// Everything a kernel needs of a session, as plain values: passed by value to every launch.
// Built in one place (ep_session::view); the address arithmetic every kernel uses lives here
// too, so the layout exists once and kernels never rebuild offsets by hand.

#include <nccl.h>

#include <cstddef>
#include <cstdint>

#include "epgraph/comm/fast_divisor.hpp"
#include "epgraph/comm/ep_config.hpp"
#include "epgraph/comm/host_device.hpp"
#include "epgraph/comm/workspace_layout.hpp"

namespace epgraph::comm {

/// The expert placement table in device memory (ep_config::expert_slots_per_rank > 0), as
/// plain pointers into the session's local state (layout.placement): the flat form of
/// comm::expert_placement, physical ids [0, physical). Unused physical ids have rank_of -1.
struct placement_ref {
  int num_experts = 0, physical = 0, local_slots = 0;
  const std::int32_t* replica_offsets = nullptr;  ///< [num_experts + 1]
  const std::int32_t* replica_ids = nullptr;      ///< [physical] (the first replica_offsets[num_experts] used)
  const std::int32_t* rank_of = nullptr;          ///< [physical]
  const std::int32_t* local_of = nullptr;         ///< [physical]
  const std::int32_t* logical_of = nullptr;       ///< [physical]: the logical expert a physical one serves
  const std::int32_t* slot_expert = nullptr;      ///< [ep_size x local_slots]: the logical expert slot
                                                  ///< (rank, s) serves, or -1 (an empty slot)
};

struct session_view {
  ncclWindow_t window;
  char* window_local;  ///< this rank's window memory (the ncclMemAlloc alias)
  char* local;         ///< this rank's local state
  char* remote_state;  ///< this rank's remote state (ranks of other domains); null with one domain
  workspace_layout layout;
  int rank, ep_size, max_tokens, top_k, num_experts, experts_per_rank, hidden, num_ctas, threads_per_cta;
  /// Divides by experts_per_rank (the contiguous rule's rank of an expert). Set with it by
  /// make_session_view; a view filled by hand must set both (the default divides by 1).
  fast_divisor per_rank;
  int local_slots;  ///< expert slots per rank (ep_config::local_slots)
  bool placed;      ///< a placement table is read (else the contiguous rule)
  /// This rank's NVLink domain: ranks domain_first .. domain_first + domain_size - 1, which are
  /// LSA ranks 0 .. domain_size - 1 of the device communicator (lsa_rank is this rank's).
  int domain_size, domain_first, lsa_rank;
  element_type combine_type;
  std::uint64_t deadline_ns;  ///< device waits give up after this long; 0 = never
  bool programmatic_launch;   ///< ep_config::programmatic_launch: kernels let the next one launch early

  template <class T>
  EPGRAPH_HD T* local_at(const region& r) const {
    return reinterpret_cast<T*>(local + r.offset);
  }
  template <class T>
  EPGRAPH_HD T* remote_at(const region& r) const {
    return reinterpret_cast<T*>(remote_state + r.offset);
  }
  template <class T>
  EPGRAPH_HD T* window_at(const region& r) const {
    return reinterpret_cast<T*>(window_local + r.offset);
  }
  /// Window offset of row `slot` of source `src` in a region laid out [ep][max_tokens][row_bytes].
  EPGRAPH_HD std::size_t row_offset(const region& r, int src, int slot, std::size_t row_bytes) const {
    return r.offset + (static_cast<std::size_t>(src) * static_cast<std::size_t>(max_tokens) +
                       static_cast<std::size_t>(slot)) * row_bytes;
  }
  /// The placement table (placed only; else every pointer is null).
  EPGRAPH_HD placement_ref placement() const {
    placement_ref t;
    if (!placed) return t;
    t.num_experts = num_experts;
    t.physical = ep_size * local_slots;
    t.local_slots = local_slots;
    const auto* base = reinterpret_cast<const std::int32_t*>(local + layout.placement.offset);
    t.replica_offsets = base;
    t.replica_ids = base + num_experts + 1;
    t.rank_of = t.replica_ids + t.physical;
    t.local_of = t.rank_of + t.physical;
    t.logical_of = t.local_of + t.physical;
    t.slot_expert = t.logical_of + t.physical;
    return t;
  }
  /// This rank's local slot of a received expert id (physical with a table, else the logical
  /// id by the contiguous rule), or -1 when the id is not served here (or out of range).
  EPGRAPH_HD int local_slot_of(int id) const {
    if (!placed) {
      const int l = id - rank * experts_per_rank;
      return l >= 0 && l < experts_per_rank ? l : -1;
    }
    if (id < 0 || id >= ep_size * local_slots) return -1;
    const placement_ref t = placement();
    return t.rank_of[id] == rank ? t.local_of[id] : -1;
  }
  /// True when rank d is in this rank's domain (reached by NVLink stores and loads).
  EPGRAPH_HD bool in_domain(int d) const { return d >= domain_first && d < domain_first + domain_size; }
  /// The LSA rank of domain member d (what ncclGetLsaPointer takes).
  EPGRAPH_HD int lsa_peer(int d) const { return d - domain_first; }
  /// Index of rank d outside this domain among the remote ranks, in rank order: 0 .. ep - L - 1.
  EPGRAPH_HD int remote_index(int d) const { return d < domain_first ? d : d - domain_size; }
  /// The rank of remote index i (the inverse of remote_index).
  EPGRAPH_HD int remote_rank(int i) const { return i < domain_first ? i : i + domain_size; }
  /// Remote-state offset of row `slot` staged for (or received from) remote rank d in a region
  /// laid out [remote][max_tokens][row_bytes].
  EPGRAPH_HD std::size_t remote_row_offset(const region& r, int d, int slot, std::size_t row_bytes) const {
    return r.offset + (static_cast<std::size_t>(remote_index(d)) * static_cast<std::size_t>(max_tokens) +
                       static_cast<std::size_t>(slot)) * row_bytes;
  }
  /// Window offset of progress slot [src][cta], src an LSA rank of this domain.
  EPGRAPH_HD std::size_t arrival_offset(int src, int cta) const {
    return layout.arrivals.offset +
           (static_cast<std::size_t>(src) * static_cast<std::size_t>(num_ctas) + static_cast<std::size_t>(cta)) *
               sizeof(std::uint64_t);
  }
};

/// The view of rank `rank` of a session with this config and layout, given its memory: the one
/// place a view is built (ep_session::view; host tests build views of a whole group with it).
session_view make_session_view(const ep_config& config, const workspace_layout& layout, int rank, ncclWindow_t window,
                               char* window_local, char* local, char* remote_state);

}  // namespace epgraph::comm
