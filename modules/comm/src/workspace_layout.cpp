#include "epgraph/comm/workspace_layout.hpp"

#include <cstdint>
#include <sstream>
#include <type_traits>

#include "epgraph/comm/error.hpp"
#include "epgraph/comm/faults.hpp"
#include "region_builder.hpp"

namespace epgraph::comm {

static_assert(std::is_trivially_copyable_v<workspace_layout>, "kernels receive the layout by value");

workspace_layout plan_workspace(const ep_config& c) {
  validate(c);
  const auto ep = static_cast<std::size_t>(c.ep_size);
  const auto max_tokens = static_cast<std::size_t>(c.max_tokens_per_rank);
  const auto ctas = static_cast<std::size_t>(c.num_ctas);
  const auto domain = static_cast<std::size_t>(c.ranks_per_domain());
  const auto remote = static_cast<std::size_t>(c.remote_ranks());

  workspace_layout l;
  detail::region_builder window(c);
  l.counts = window.add(ep, sizeof(std::int32_t));
  l.arrivals = window.add(domain, ctas, sizeof(std::uint64_t));
  l.mailbox = window.add(3, ep, mailbox_slot_bytes);
  l.topk_ids = window.add(ep, max_tokens, static_cast<std::size_t>(c.top_k), sizeof(std::int32_t));
  l.num_payloads = static_cast<int>(c.payloads.size());
  for (int i = 0; i < l.num_payloads; ++i) l.payloads[i] = window.add(ep, max_tokens, c.payloads[i].row_bytes);
  l.combine_row_bytes = static_cast<std::size_t>(c.hidden) * element_size(c.combine_type);
  l.combine = window.add(ep, max_tokens, l.combine_row_bytes);
  l.window_bytes = window.total(window_granularity);

  detail::region_builder local(c);
  l.token_slots = local.add(max_tokens, ep, sizeof(std::int32_t));
  l.lookback = local.add(ctas, ep, sizeof(std::uint64_t));
  l.launches = local.add(ctas, launch_word_stride);
  l.push_claims = local.add(ctas, launch_word_stride);
  l.dispatched = local.add(1, sizeof(std::int32_t));
  l.dispatch_word = local.add(1, sizeof(std::uint64_t));
  l.faults = local.add(1, sizeof(device_faults));
  l.expert_counts = local.add(static_cast<std::size_t>(c.local_slots()), sizeof(std::int32_t));
  l.expert_load = local.add(static_cast<std::size_t>(c.local_slots()) + 1, sizeof(std::uint64_t));
  l.placement = local.add(c.placement_table() ? static_cast<std::size_t>(c.num_experts) + 1 +
                                                    5 * static_cast<std::size_t>(c.physical_experts())
                                              : 0,
                          sizeof(std::int32_t));
  l.local_bytes = local.total(region_alignment);

  detail::region_builder far(c);
  l.staged_topk_ids = far.add(remote, max_tokens, static_cast<std::size_t>(c.top_k), sizeof(std::int32_t));
  for (int i = 0; i < l.num_payloads; ++i) l.staged_payloads[i] = far.add(remote, max_tokens, c.payloads[i].row_bytes);
  l.staged_counts = far.add(remote, sizeof(std::int32_t));
  l.remote_words = far.add(2, remote, sizeof(std::uint64_t));
  l.combine_mark = far.add(remote ? 1 : 0, sizeof(std::uint64_t));
  l.combine_started = far.add(remote ? 1 : 0, sizeof(std::uint64_t));
  l.combines_done = far.add(remote ? 1 : 0, sizeof(std::uint64_t));
  l.dispatch_done = far.add(remote ? 1 : 0, sizeof(std::uint64_t));
  l.remote_partials = far.add(remote, max_tokens, l.combine_row_bytes);
  l.remote_bytes = remote ? far.total(window_granularity) : 0;
  return l;
}

std::size_t workspace_bytes_per_rank(const ep_config& config) {
  auto l = plan_workspace(config);
  return l.window_bytes + l.local_bytes + l.remote_bytes;
}

std::vector<named_region> list_regions(const workspace_layout& l, const std::vector<std::string>& payload_names) {
  std::vector<named_region> out{
      {"window", "counts", l.counts}, {"window", "arrivals", l.arrivals}, {"window", "mailbox", l.mailbox},
      {"window", "topk_ids", l.topk_ids}};
  // "payload_<name>", or "payload[i]" without names; the staged copies get the same names.
  const auto payload_name = [&](const std::string& prefix, int i) {
    const auto n = static_cast<std::size_t>(i);
    return n < payload_names.size() ? prefix + "_" + payload_names[n] : prefix + "[" + std::to_string(i) + "]";
  };
  for (int i = 0; i < l.num_payloads; ++i) out.push_back({"window", payload_name("payload", i), l.payloads[i]});
  out.push_back({"window", "combine", l.combine});
  for (auto [name, r] : {std::pair{"token_slots", l.token_slots}, std::pair{"lookback", l.lookback},
                         std::pair{"launches", l.launches}, std::pair{"push_claims", l.push_claims},
                         std::pair{"dispatched", l.dispatched},
                         std::pair{"dispatch_word", l.dispatch_word}, std::pair{"faults", l.faults},
                         std::pair{"expert_counts", l.expert_counts}, std::pair{"expert_load", l.expert_load},
                         std::pair{"placement", l.placement}})
    out.push_back({"local", name, r});
  if (l.remote_bytes == 0) return out;  // one domain: no remote state
  out.push_back({"remote", "staged_topk_ids", l.staged_topk_ids});
  for (int i = 0; i < l.num_payloads; ++i)
    out.push_back({"remote", payload_name("staged_payload", i), l.staged_payloads[i]});
  for (auto [name, r] : {std::pair{"staged_counts", l.staged_counts}, std::pair{"remote_words", l.remote_words},
                         std::pair{"combine_mark", l.combine_mark},
                         std::pair{"combine_started", l.combine_started},
                         std::pair{"combines_done", l.combines_done}, std::pair{"dispatch_done", l.dispatch_done},
                         std::pair{"remote_partials", l.remote_partials}})
    out.push_back({"remote", name, r});
  return out;
}

std::string describe(const workspace_layout& l) {
  std::ostringstream out;
  std::string section;
  for (const named_region& r : list_regions(l)) {
    if (r.section != section) {
      section = r.section;
      if (section == "window") out << "symmetric window (" << l.window_bytes << " bytes):\n";
      else if (section == "local") out << "local state (" << l.local_bytes << " bytes):\n";
      else out << "remote state (" << l.remote_bytes << " bytes):\n";
    }
    out << "  " << r.name << ": offset " << r.where.offset << ", " << r.where.bytes << " bytes\n";
  }
  return out.str();
}

}  // namespace epgraph::comm
