#pragma once
// Where everything lives: a pure host function of the EP config.
//
// Symmetric window (same layout on every rank of a domain; domain peers write into it):
//   counts    int32 [ep]                     tokens received from each source this step
//   arrivals  uint64 [L][num_ctas]           progress words: slot [lsa src][b] is written by CTA b of src
//   mailbox   [3][ep] x mailbox_slot_bytes   host agreement after setup: two rounds, one "left" mark
//   topk_ids  int32 [ep][max_tokens][k]      routing of every received token (travels implicitly)
//   payload i bytes [ep][max_tokens][row_i]  one region per payload
//   combine   elem  [ep][max_tokens][hidden] expert output read by combine (zero copy)
// Rows of a source in another domain arrive in the same [src] blocks, by NCCL receive.
// Local state (plain device memory, this rank only):
//   token_slots   int32 [max_tokens][ep]     slot of each token at each destination, or -1
//   lookback      uint64 [num_ctas][ep]      per-CTA destination counts, tagged by launch number
//   launches      uint64 [num_ctas] x 128 B  per CTA, a line of its own: launches so far, running now (progress.hpp)
//   push_claims   uint64 [num_ctas] x 128 B  per dispatch CTA, a line of its own: tokens of its chunk claimed
//                                            so far (runs past the chunk's end), tagged by launch
//                                            number; other CTAs claim from it once theirs are
//                                            pushed (dispatch.cu). Written by every CTA each launch
//   dispatched    int32                      the token count the last dispatch used
//   dispatch_word uint64                     the last dispatch's progress word (its number)
//   faults        device_faults              first input fault, first fatal fault
//   expert_counts int32 [local_slots]        received (token, top-k entry) pairs per local slot
//   expert_load   uint64 [local_slots + 1]   load statistics across steps: tokens per local
//                                            slot, then received tokens (summarize adds them)
//   placement     int32 [E + 1 + 5 P]        the placement table (placement_ref; E experts, P =
//                                            ep x local_slots physical ids); empty without one
// Remote state, for the ranks outside this rank's domain (R = ep - L of them; empty when R = 0),
// indexed by remote index (session_view::remote_index). ncclMemAlloc'd (cuMem) memory of this
// rank, not a window: NCCL can register it for zero-copy send/recv inside CUDA graphs, as it
// does the window (a mix of registrable and cudaMalloc'd buffers hung NCCL 2.28.9's graph
// registration; docs/domains.md):
//   staged_topk_ids, staged payload i  [R][max_tokens][row]  rows dispatch packs for each remote rank
//   staged_counts        int32 [R]           tokens packed for each remote rank
//   remote_words         uint64 [2][R]       dispatch_word of each remote rank, as sent with its
//                                            rows (0) and with its combine rows (1); zeroed
//                                            by each dispatch, so 0 means "not arrived yet"
//   combine_mark         uint64              combine_started, copied by this rank's own combine
//                                            exchange as it starts; zeroed by the combine
//                                            kernel (so: set = combine exchange running)
//   combine_started      uint64              1, written at setup: a constant, so that a combine
//                                            before any dispatch also sets its mark
//   combines_done        uint64              combine kernels run (bumped where the mark is
//                                            cleared): tells two combines of one dispatch apart
//   dispatch_done        uint64              dispatch_word, copied after the dispatch exchange
//                                            (so: dispatch_word != dispatch_done = it runs);
//                                            dispatch_not_launched before an exchange whose
//                                            dispatch kernel failed to launch (no new word);
//                                            the stopped word a failed step node writes into
//                                            dispatch_word, written here too
//   remote_words, combine_mark, dispatch_done are what the exchange guard watches
//   (docs/domains.md, failure modes).
//   remote_partials      elem [R][max_tokens][hidden]  combine rows remote ranks sent back
// Strides are static (max_tokens_per_rank), never a per-step maximum: a region never moves
// between steps, which the two-barrier argument relies on, and NCCL's sizes are known when a
// step is captured (fixed slabs: docs/domains.md). The layout is trivially copyable: kernels
// receive it by value inside session_view, so offsets have one source.

#include <cstddef>
#include <string>
#include <vector>

#include "epgraph/comm/ep_config.hpp"
#include "epgraph/comm/host_device.hpp"

namespace epgraph::comm {

struct region {
  std::size_t offset = 0;
  std::size_t bytes = 0;
  EPGRAPH_HD constexpr std::size_t end() const noexcept { return offset + bytes; }
};

inline constexpr std::size_t region_alignment = 256;  // >= 16-byte vectors, 128-byte lines
inline constexpr std::size_t window_granularity = 4096;
inline constexpr std::size_t mailbox_slot_bytes = 256;
/// Stride of the per-CTA launch words: one cache line each, so the CTAs' atomics at kernel
/// start never queue behind each other on one line.
inline constexpr std::size_t launch_word_stride = 128;

/// dispatch_done while the exchange of a dispatch whose kernel did not launch runs (all bits
/// set, as a byte memset writes it): the exchange guard watches that exchange too.
inline constexpr std::uint64_t dispatch_not_launched = ~std::uint64_t{0};

struct workspace_layout {
  // symmetric window
  region counts;
  region arrivals;
  region mailbox;
  region topk_ids;
  region payloads[max_payloads];
  int num_payloads = 0;
  region combine;
  std::size_t window_bytes = 0;  ///< rounded up to window_granularity
  // local state
  region token_slots;
  region lookback;
  region launches;
  region push_claims;
  region dispatched;
  region dispatch_word;
  region faults;
  region expert_counts;
  region expert_load;
  region placement;
  std::size_t local_bytes = 0;
  // remote state (the ranks outside this rank's domain)
  region staged_topk_ids;
  region staged_payloads[max_payloads];
  region staged_counts;
  region remote_words;
  region combine_mark;
  region combine_started;
  region combines_done;
  region dispatch_done;
  region remote_partials;
  std::size_t remote_bytes = 0;  ///< 0 with one domain

  std::size_t combine_row_bytes = 0;  ///< hidden * element_size(combine_type)
};

/// Computes the layout; validates the config first and throws a config error if any
/// size overflows (the message gives the bytes asked for and the knobs that reduce them).
workspace_layout plan_workspace(const ep_config& config);

/// Bytes of GPU memory a session of this config needs on each rank (window, local and remote state),
/// so users can plan memory before creating one. domain_size 0 counts as one domain (no remote
/// state): pass the size the session will resolve (the GPUs per node) when the job spans nodes.
std::size_t workspace_bytes_per_rank(const ep_config& config);

/// A region and its name, for listings (describe, epg-bench's workspace columns).
struct named_region {
  std::string section;  ///< "window" (symmetric), "local" or "remote"
  std::string name;
  region where;
};
/// Every region of the layout: the window's, the local state's, then the remote state's. Payload i is named
/// "payload_" + payload_names[i] when names are given, else "payload[i]".
std::vector<named_region> list_regions(const workspace_layout& layout,
                                       const std::vector<std::string>& payload_names = {});

/// Human-readable table of the regions (for logs).
std::string describe(const workspace_layout& layout);

}  // namespace epgraph::comm
