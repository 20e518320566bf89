#pragma once
// The progress record and the collective-step check; host and device share these functions,
// so the host tests cover the protocol the kernels run.
//
// Every collective launch of a session (dispatch or combine) has a number: launch n carries n
// in every CTA. When CTA b of rank r reaches its LSA barrier it arrives (NCCL), then writes its
// progress word (n, kind) into slot [r][b] of every rank's window, and enters NCCL's wait only
// once every peer's slot [p][b] shows the same collective or a later one. Because a rank writes
// its word only after it arrived, a peer word that is later than n means the peer passed
// collective n, which took this rank's arrival and the same kind: the pairing was right. A word
// with the same number and another kind means the ranks launched different sequences. A word
// that stays earlier past the deadline names a peer that never came.

#include <cstdint>

#include "epgraph/comm/faults.hpp"
#include "epgraph/comm/host_device.hpp"

namespace epgraph::comm {

/// Set in every stopped word: progress slots are only ever raised (atomic max), so once a rank
/// announced that it stopped, a late word of a kernel of its own cannot hide it again.
inline constexpr std::uint64_t stopped_bit = std::uint64_t{1} << 63;

EPGRAPH_HD constexpr std::uint64_t progress_word(std::uint64_t seq, collective_kind kind) {
  return (kind == collective_kind::stopped ? stopped_bit : 0) | seq << 2 | static_cast<std::uint64_t>(kind);
}
EPGRAPH_HD constexpr std::uint64_t progress_seq(std::uint64_t word) { return (word & ~stopped_bit) >> 2; }
EPGRAPH_HD constexpr collective_kind progress_kind(std::uint64_t word) {
  return static_cast<collective_kind>(word & 3u);
}

enum class peer_state : int { waiting, arrived, out_of_step, stopped };

/// What peer word `w` means to a CTA that arrived at collective `seq` of kind `kind`.
EPGRAPH_HD constexpr peer_state classify_peer(std::uint64_t seq, collective_kind kind, std::uint64_t w) {
  if (progress_kind(w) == collective_kind::stopped) return peer_state::stopped;
  const std::uint64_t peer_seq = progress_seq(w);
  if (peer_seq > seq) return peer_state::arrived;
  if (peer_seq < seq) return peer_state::waiting;
  return progress_kind(w) == kind ? peer_state::arrived : peer_state::out_of_step;
}

/// The per-CTA launch word in local state (workspace_layout::launches): launches so far above
/// bit 16, an "overlapped" bit (15), and below it the launches of CTA b running now. A launch
/// claims CTA b with one atomic add of launch_claim_increment and gives the claim back
/// (subtracts 1) when it ends, refused or not. A launch that finds CTA b running or
/// overlapped is refused; one that finds it running also sets the overlapped bit, which is
/// never cleared, so every later launch of the session is refused as well. The running count
/// is then bounded by the launches in flight at once, however many are refused.
inline constexpr int launch_running_bits = 16;
inline constexpr std::uint64_t launch_overlapped_bit = std::uint64_t{1} << (launch_running_bits - 1);
inline constexpr std::uint64_t launch_running_mask = launch_overlapped_bit - 1;
inline constexpr std::uint64_t launch_claim_increment = (std::uint64_t{1} << launch_running_bits) | 1;

struct launch_claim {
  std::uint64_t seq;  ///< this launch's number (1 = the session's first collective)
  bool overlapping;   ///< another launch holds CTA b now: set the overlapped bit
  bool refused;       ///< overlapping, or an overlap happened before
};
/// What a launch that read `before` from the launch word (while adding the increment) holds.
EPGRAPH_HD constexpr launch_claim claim_launch(std::uint64_t before) {
  const bool running = (before & launch_running_mask) != 0;
  return {(before >> launch_running_bits) + 1, running, running || (before & launch_overlapped_bit) != 0};
}

/// Where a rank was last seen from this rank (ep_session::peer_progress).
struct collective_position {
  std::uint64_t seq = 0;  ///< the highest collective number any of its CTAs reached the barrier of
  collective_kind kind = collective_kind::none;  ///< the op of that collective
  bool stopped = false;   ///< it reported a fatal fault or left the session
};

}  // namespace epgraph::comm
