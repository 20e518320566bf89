#include "epgraph/comm/session_view.hpp"

#include <algorithm>
#include <cmath>

namespace epgraph::comm {

session_view make_session_view(const ep_config& c, const workspace_layout& layout, int rank, ncclWindow_t window,
                               char* window_local, char* local, char* remote_state) {
  session_view view{};
  view.window = window;
  view.window_local = window_local;
  view.local = local;
  view.remote_state = remote_state;
  view.layout = layout;
  view.rank = rank;
  view.ep_size = c.ep_size;
  view.max_tokens = c.max_tokens_per_rank;
  view.top_k = c.top_k;
  view.num_experts = c.num_experts;
  view.experts_per_rank = c.experts_per_rank();
  view.per_rank = fast_divisor::of(view.experts_per_rank);
  view.local_slots = c.local_slots();
  view.placed = c.placement_table();
  view.hidden = c.hidden;
  view.num_ctas = c.num_ctas;
  view.threads_per_cta = c.threads_per_cta;
  view.combine_type = c.combine_type;
  view.domain_size = c.ranks_per_domain();
  view.domain_first = rank - rank % view.domain_size;
  view.lsa_rank = rank - view.domain_first;
  view.programmatic_launch = c.programmatic_launch;
  // At least 1 ns: a positive deadline must never become 0 ("wait forever").
  view.deadline_ns = c.deadline_seconds > 0 ? std::max<std::uint64_t>(1, std::llround(c.deadline_seconds * 1e9)) : 0;
  return view;
}

}  // namespace epgraph::comm
