#pragma once
// The mailbox: how ranks agree on host-side decisions once the window exists. A tiny kernel
// stores this rank's slot into slot [parity][rank] of every rank's mailbox (body first, round
// last, system-scope fence between); the host polls its own memory. Nothing ever waits on the
// device, so a peer that never comes leaves nothing stuck behind. Rounds alternate parity:
// a peer can post round r+1 only after it saw this rank's round r, so it never overwrites a
// slot this rank still reads. Leaving writes row 2 only ([2][rank]), so a round a rank posted
// before it left stays readable. Private to the comm module.
#include <cuda_runtime_api.h>
#include <nccl.h>

#include <cstddef>
#include <cstdint>

#include "epgraph/comm/faults.hpp"
#include "epgraph/comm/workspace_layout.hpp"

namespace epgraph::comm::detail {

struct mailbox_slot {
  std::uint64_t round = 0;  ///< written last; in row 2: left_round once the rank left the session
  char what[56] = {};       ///< the host collective this round belongs to (NUL-terminated)
  std::int64_t values[24] = {};
};
static_assert(sizeof(mailbox_slot) == mailbox_slot_bytes);
inline constexpr int mailbox_values = 24;
inline constexpr std::uint64_t left_round = ~std::uint64_t{0};
inline constexpr std::size_t mailbox_left_row = 2;

/// What peer slot row `parity` (its posted round) and its left mark mean to a rank waiting for
/// round `mine`. A round posted before the peer left still counts: its body stays readable.
enum class mail_state { arrived, missing, left, ahead };
constexpr mail_state classify_mail(std::uint64_t mine, std::uint64_t posted, bool left_mark) noexcept {
  if (posted == mine) return mail_state::arrived;
  if (posted > mine) return mail_state::ahead;  // impossible while the rounds are in step
  return left_mark ? mail_state::left : mail_state::missing;
}

/// Where the mailbox and the progress slots of one session live.
struct mailbox_view {
  ncclWindow_t window = nullptr;
  const char* window_local = nullptr;
  std::size_t mailbox_offset = 0;
  std::size_t arrivals_offset = 0;
  device_faults* faults = nullptr;  ///< this rank's local fault records
  int rank = 0, ranks = 0, ctas = 0;
};

/// Stores `slot` into slot [slot.round & 1][rank] of every rank's mailbox. Returns the launch status.
cudaError_t post_mail(const mailbox_view& m, const mailbox_slot& slot, cudaStream_t stream) noexcept;

/// Leaving the session: records fault `reason` on this rank (if none), stores a stopped progress
/// word into every progress slot of this rank in every rank's window (so their kernels fault at
/// once instead of waiting for the deadline), and posts left_round into row 2 of every mailbox.
cudaError_t post_leave(const mailbox_view& m, fault_code reason, cudaStream_t stream) noexcept;

}  // namespace epgraph::comm::detail
