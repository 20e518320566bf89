#include "epgraph/comm/ep_config.hpp"

#include <cmath>
#include <source_location>
#include <sstream>

#include "epgraph/comm/error.hpp"

namespace epgraph::comm {

std::size_t element_size(element_type t) noexcept {
  switch (t) {
    case element_type::bf16:
    case element_type::fp16: return 2;
    case element_type::fp32: return 4;
  }
  return 0;
}

std::string_view to_string(element_type t) noexcept {
  switch (t) {
    case element_type::bf16: return "bf16";
    case element_type::fp16: return "fp16";
    case element_type::fp32: return "fp32";
  }
  return "unknown";
}

element_type parse_element_type(std::string_view name) {
  for (auto t : {element_type::bf16, element_type::fp16, element_type::fp32})
    if (name == to_string(t)) return t;
  throw_config_error("combine_type", "unknown element type '" + std::string(name) + "'",
                     "use one of bf16, fp16, fp32");
}

namespace {
// The location is validate()'s line for this field, not this helper's.
void require_range(const char* field, long long value, long long lo, long long hi, const char* why = "",
                   std::source_location where = std::source_location::current()) {
  if (value < lo || value > hi) {
    std::ostringstream msg;
    msg << "is " << value << ", allowed range [" << lo << ", " << hi << "]";
    if (*why) msg << " (" << why << ")";
    throw_config_error(field, msg.str(), {}, where);
  }
}
}  // namespace

void validate(const ep_config& c) {
  require_range("ep_size", c.ep_size, 1, max_ep_size, "destination sets are 64-bit masks");
  require_range("max_tokens_per_rank", c.max_tokens_per_rank, 1, max_tokens_limit);
  require_range("top_k", c.top_k, 1, max_top_k);
  require_range("num_experts", c.num_experts, c.ep_size, max_experts, "at least one expert per rank");
  if (c.num_experts % c.ep_size != 0) {
    throw_config_error("num_experts",
                       "is " + std::to_string(c.num_experts) + ", not divisible by ep_size " +
                           std::to_string(c.ep_size),
                       "expert e lives on rank e / (num_experts / ep_size): choose a multiple of ep_size");
  }
  require_range("top_k", c.top_k, 1, c.num_experts, "cannot pick more experts than exist");
  if (c.expert_slots_per_rank != 0)
    require_range("expert_slots_per_rank", c.expert_slots_per_rank, c.experts_per_rank(), c.num_experts,
                  "0 for the contiguous rule; else at least experts_per_rank (the table starts contiguous), and "
                  "no more slots than experts");
  require_range("domain_size", c.domain_size, 0, c.ep_size, "ranks per NVLink domain; 0 = the NVLink team NCCL finds");
  if (c.domain_size > 0 && c.ep_size % c.domain_size != 0)
    throw_config_error("domain_size",
                       "is " + std::to_string(c.domain_size) + ", which does not divide ep_size " +
                           std::to_string(c.ep_size),
                       "the EP group is ep_size / domain_size domains of equal size: choose a divisor of ep_size "
                       "(the GPUs per node, say), or 0 for the NVLink team NCCL finds");
  require_range("remote_ctas", c.remote_ctas, 0, max_remote_ctas,
                "CTAs of each NCCL exchange between domains; 0 = NCCL's choice");
  require_range("hidden", c.hidden, 1, 1 << 18);
  if (element_size(c.combine_type) == 0) throw_config_error("combine_type", "is not bf16, fp16 or fp32");
  require_range("payloads.size()", static_cast<long long>(c.payloads.size()), 0, max_payloads);
  for (std::size_t i = 0; i < c.payloads.size(); ++i) {
    std::string field = "payloads[" + std::to_string(i) + "].row_bytes";
    require_range(field.c_str(), static_cast<long long>(c.payloads[i].row_bytes), 1,
                  static_cast<long long>(max_row_bytes));
  }
  require_range("num_ctas", c.num_ctas, 1, max_num_ctas, "one LSA barrier per CTA; all CTAs co-resident");
  require_range("threads_per_cta", c.threads_per_cta, 64, max_threads_per_cta);
  if (c.threads_per_cta % 32 != 0)
    throw_config_error("threads_per_cta", "is " + std::to_string(c.threads_per_cta) + ", not a multiple of 32");
  if (!std::isfinite(c.deadline_seconds) || c.deadline_seconds < 0 || c.deadline_seconds > max_deadline_seconds) {
    std::ostringstream msg;
    msg << "is " << c.deadline_seconds << ", allowed range [0, " << max_deadline_seconds << "] seconds";
    throw_config_error("deadline_seconds", msg.str(), "0 waits forever; a finite deadline turns a stalled peer into a fault");
  }
}

std::vector<std::pair<std::string, std::int64_t>> fingerprint(const ep_config& c) {
  std::vector<std::pair<std::string, std::int64_t>> f = {
      {"ep_size", c.ep_size},
      {"domain_size", c.domain_size},
      {"remote_ctas", c.remote_ctas},
      {"max_tokens_per_rank", c.max_tokens_per_rank},
      {"top_k", c.top_k},
      {"num_experts", c.num_experts},
      {"expert_slots_per_rank", c.expert_slots_per_rank},
      {"hidden", c.hidden},
      {"combine_type", static_cast<std::int64_t>(c.combine_type)},
      {"num_ctas", c.num_ctas},
      {"threads_per_cta", c.threads_per_cta},
      {"payloads.size()", static_cast<std::int64_t>(c.payloads.size())},
  };
  for (int i = 0; i < max_payloads; ++i) {
    auto bytes = i < static_cast<int>(c.payloads.size()) ? c.payloads[i].row_bytes : 0;
    f.emplace_back("payloads[" + std::to_string(i) + "].row_bytes", static_cast<std::int64_t>(bytes));
  }
  return f;
}

std::string describe_mismatch(const std::vector<std::string>& names,
                              const std::vector<std::vector<std::int64_t>>& all) {
  for (std::size_t f = 0; f < names.size(); ++f) {
    bool same = true;
    for (const auto& rank_values : all) same = same && rank_values.at(f) == all.front().at(f);
    if (same) continue;
    std::ostringstream msg;
    msg << "field '" << names[f] << "' differs between ranks:";
    for (std::size_t r = 0; r < all.size(); ++r) msg << " rank " << r << "=" << all[r][f];
    return msg.str();
  }
  return {};
}

int resolve_domain_size(int requested, int ep_size, const std::vector<int>& lsa_team_sizes) {
  if (requested > 0) return requested;
  const int team = lsa_team_sizes.empty() ? 0 : lsa_team_sizes.front();
  const char* hint =
      "set ep_config::domain_size to the GPUs per node (a divisor of ep_size), with ranks numbered node by node";
  for (std::size_t r = 0; r < lsa_team_sizes.size(); ++r)
    if (lsa_team_sizes[r] != team)
      throw error(error_domain::nccl, "ncclTeamLsa (domain_size 0)", 0,
                  "the NVLink (LSA) teams NCCL found differ between ranks: rank 0 has " + std::to_string(team) +
                      " rank(s), rank " + std::to_string(r) + " has " + std::to_string(lsa_team_sizes[r]),
                  hint);
  if (team < 1 || team > ep_size || ep_size % team != 0)
    throw error(error_domain::nccl, "ncclTeamLsa (domain_size 0)", 0,
                "NCCL's NVLink (LSA) team of the EP communicator has " + std::to_string(team) +
                    " rank(s), which is no domain size for an EP group of " + std::to_string(ep_size),
                hint);
  return team;
}

void check_lsa_team(int ep_size, int domain_size, int rank, int lsa_size, int lsa_rank) {
  const int L = domain_size > 0 ? domain_size : ep_size;
  const int first = rank - rank % L;
  if (lsa_size == L && lsa_rank == rank % L) return;
  std::ostringstream msg;
  msg << "the NVLink (LSA) team of rank " << rank << " has " << lsa_size << " rank(s) and puts it at LSA rank "
      << lsa_rank << ", but its domain is ranks " << first << ".." << first + L - 1 << " (" << L
      << " of the EP group's " << ep_size << ")";
  std::string hint;
  if (lsa_size < L)
    hint = "the ranks of one domain must all be GPUs of one NVLink domain (one node with NVSwitch or all-pairs "
           "NVLink) with peer access between them: set ep_config::domain_size to the GPUs per node (" +
           std::to_string(lsa_size) + " here) or fewer, with ranks numbered node by node";
  else
    hint = "the communicator must be exactly the EP group, ranked domain by domain as the NVLink team";
  throw error(error_domain::nccl, "ncclDevCommCreate (LSA team)", 0, msg.str(), hint);
}

}  // namespace epgraph::comm
