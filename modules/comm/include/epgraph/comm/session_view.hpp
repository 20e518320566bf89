#pragma once
// Everything a kernel needs of a session, as plain values: passed by value to every launch.
// Built in one place (ep_session::view); the address arithmetic every kernel uses lives here
// too, so the layout exists once and kernels never rebuild offsets by hand.

#include <nccl.h>

#include <cstddef>
#include <cstdint>

#include "epgraph/comm/ep_config.hpp"
#include "epgraph/comm/host_device.hpp"
#include "epgraph/comm/workspace_layout.hpp"

namespace epgraph::comm {

struct session_view {
  ncclWindow_t window;
  char* window_local;  ///< this rank's window memory (the ncclMemAlloc alias)
  char* local;         ///< this rank's local state
  workspace_layout layout;
  int rank, ep_size, max_tokens, top_k, num_experts, experts_per_rank, hidden, num_ctas, threads_per_cta;
  element_type combine_type;
  std::uint64_t deadline_ns;  ///< device waits give up after this long; 0 = never

  template <class T>
  EPGRAPH_HD T* local_at(const region& r) const {
    return reinterpret_cast<T*>(local + r.offset);
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
  /// Window offset of progress slot [src][cta].
  EPGRAPH_HD std::size_t arrival_offset(int src, int cta) const {
    return layout.arrivals.offset +
           (static_cast<std::size_t>(src) * static_cast<std::size_t>(num_ctas) + static_cast<std::size_t>(cta)) *
               sizeof(std::uint64_t);
  }
};

}  // namespace epgraph::comm
