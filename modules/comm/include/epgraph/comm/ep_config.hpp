#pragma once
#include "epgraph/comm/requires_cxx20.hpp"
// The expert-parallel configuration every rank must agree on, and its validation.
//
// Pure host code: no GPU, no communication. validate() throws epgraph::comm::error
// (domain config) naming the field and the allowed range.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace epgraph::comm {

/// Element type of the expert output, the combine region and the combine output.
enum class element_type : std::uint8_t { bf16 = 0, fp16 = 1, fp32 = 2 };

std::size_t element_size(element_type t) noexcept;
std::string_view to_string(element_type t) noexcept;
/// Parses "bf16", "fp16", "fp32"; throws a config error otherwise.
element_type parse_element_type(std::string_view name);

/// One dispatched payload: opaque bytes per token (hidden states, FP8 scales, weights...).
struct payload_spec {
  std::string name;
  std::size_t row_bytes = 0;
};

struct ep_config {
  int ep_size = 0;                     ///< ranks in the EP group
  /// Ranks per NVLink domain, L: the group is ep_size / L domains of L consecutive ranks. Peers
  /// in this rank's domain are reached by NVLink stores (LSA), the others through NCCL
  /// point-to-point. 0 = the NVLink (LSA) team NCCL finds for the EP communicator: the GPUs of
  /// one node (ep_size on a single node); the session's config() reports the size it resolved.
  /// Each domain must be an NVLink (LSA) team or a slice of one, so one machine can emulate
  /// several domains (4 GPUs as 2 x 2 or 4 x 1).
  int domain_size = 0;
  /// Several domains: the channels (CTAs) of the session's own communicator for the exchanges
  /// between domains (its minCTAs = maxCTAs; NCCL_* environment variables still override).
  /// 0, the default: NCCL's choice, the caller's communicator's config inherited. N > 0 splits
  /// with a blocking config of its own, so a config given to the caller's communicator at its
  /// creation (netName, trafficClass, ...) is not inherited. 64 steadied the L = 2 dispatch on
  /// one NVLink machine (docs/perf-notes.md, v24); more channels hold more SMs during an
  /// exchange. Compared across ranks even with one domain (checked before domain_size 0 is
  /// resolved).
  int remote_ctas = 0;
  int max_tokens_per_rank = 0;         ///< static stride of every receive slot array
  int top_k = 0;                       ///< experts per token
  int num_experts = 0;                 ///< global (logical) experts, the ids routing names
  /// Where experts live. 0: the contiguous rule, fixed (expert e on rank e / experts_per_rank,
  /// local slot e % experts_per_rank; no table is read). N > 0: each rank has N expert slots
  /// and the session keeps a placement table (comm::expert_placement; replicas, moves between
  /// replays: ep_session::set_placement), which starts as the contiguous rule. Dispatch then
  /// sends physical expert ids: the receive side sees which replica a token chose.
  int expert_slots_per_rank = 0;
  int hidden = 0;                      ///< elements per expert-output / combine row
  element_type combine_type = element_type::bf16;
  std::vector<payload_spec> payloads;  ///< dispatched payloads, at most max_payloads
  int num_ctas = 64;                   ///< fixed grid of every dispatch/combine launch (== LSA barriers)
  int threads_per_cta = 512;
  /// Every device wait of this rank on its peers (inside dispatch and combine) ends after this
  /// many seconds with a fault naming the peers that did not arrive; the session's host
  /// collectives (setup, planning agreement, check_faults, teardown) after twice this plus one
  /// second. 0 = wait forever. Rank-local (not compared between ranks).
  double deadline_seconds = 30.0;
  /// The session's kernels are launched with CUDA's programmatic stream serialization
  /// (programmatic dependent launch): a kernel's CTAs may become resident while the kernel
  /// before it on the stream still runs, and wait (griddepcontrol.wait) for that kernel to
  /// complete before their first memory access. Each kernel lets the next one launch early:
  /// the local ones at once, dispatch and combine once past their last wait for a peer. This
  /// hides launch gaps between kernels (docs/perf-notes.md, v37). A kernel of yours launched
  /// with that attribute right after one of ours must call cudaGridDependencySynchronize() on
  /// every path before it ends or lets its own successor launch, even if it reads nothing of
  /// ours: our next kernel waits only for the kernel right ahead of it (README, Rules).
  /// false: plain launches. Rank-local.
  bool programmatic_launch = true;

  int experts_per_rank() const noexcept { return ep_size > 0 ? num_experts / ep_size : 0; }
  /// Expert slots per rank: expert_slots_per_rank, or experts_per_rank() without a table.
  int local_slots() const noexcept { return expert_slots_per_rank > 0 ? expert_slots_per_rank : experts_per_rank(); }
  /// Physical expert ids dispatch sends: [0, ep_size * local_slots()).
  int physical_experts() const noexcept { return ep_size * local_slots(); }
  bool placement_table() const noexcept { return expert_slots_per_rank > 0; }
  /// L: the ranks of one NVLink domain (an unresolved 0 counts as one domain; a session's
  /// config has it resolved).
  int ranks_per_domain() const noexcept { return domain_size > 0 ? domain_size : ep_size; }
  /// Ranks outside this rank's domain (reached through NCCL point-to-point).
  int remote_ranks() const noexcept { return ep_size - ranks_per_domain(); }
};

inline constexpr int max_ep_size = 64;    // destination sets are 64-bit masks
inline constexpr int max_top_k = 32;
inline constexpr int max_payloads = 8;
inline constexpr int max_num_ctas = 1024;
inline constexpr int max_remote_ctas = 64;  // NCCL's channels per communicator (MAXCHANNELS)
inline constexpr int max_threads_per_cta = 512;  // register budget of the collective kernels
inline constexpr int max_tokens_limit = 1 << 20;
inline constexpr int max_experts = 1 << 20;  // expert ids stay far below 2^31 (fast_divisor)
inline constexpr std::size_t max_row_bytes = std::size_t{1} << 20;
inline constexpr double max_deadline_seconds = 1e6;

/// Throws a config error naming the first invalid field and its allowed range.
void validate(const ep_config& config);

/// Every field that must be identical on all ranks, as (name, value). Payload fields are
/// named "payloads[i].row_bytes"; domain_size as given (0 and ep_size differ: 0 is the NVLink
/// team, which may be smaller). Used by the cross-rank check at session creation.
std::vector<std::pair<std::string, std::int64_t>> fingerprint(const ep_config& config);

/// Compares fingerprints gathered from every rank (all_values[rank][field]). Returns an
/// empty string when all agree, else a message naming the first differing field and the
/// values per rank. Pure; the session calls it on every rank so every rank throws.
std::string describe_mismatch(const std::vector<std::string>& field_names,
                              const std::vector<std::vector<std::int64_t>>& all_values);

/// The domain size a session uses: `requested` (ep_config::domain_size) when it is set, else
/// the size of the NVLink (LSA) team NCCL found for the EP communicator (ncclTeamLsa: the
/// GPUs per node, or their greatest common divisor when nodes differ), which every rank
/// reports in `lsa_team_sizes` (indexed by rank). Throws an nccl-domain error when the ranks'
/// teams differ, or a team is unknown (0) or does not divide ep_size. Pure: every rank
/// resolves the same gathered sizes, so all throw together.
int resolve_domain_size(int requested, int ep_size, const std::vector<int>& lsa_team_sizes);

/// Checks that the NVLink (LSA) team NCCL formed for this rank's domain is exactly the domain
/// (`domain_size` ranks) in the same order: the kernels address domain peers by LSA rank.
/// `lsa_size`/`lsa_rank` come from the device communicator of the domain (the EP communicator
/// when there is one domain). Throws an nccl-domain error naming both sizes and what to
/// change. Pure; the session runs it as an agreed step on every rank, because teams can differ
/// between ranks (e.g. two nodes of two GPUs each).
void check_lsa_team(int ep_size, int domain_size, int rank, int lsa_size, int lsa_rank);

}  // namespace epgraph::comm
