#pragma once
#include "epgraph/comm/requires_cxx20.hpp"
// Device-side faults: what a kernel found wrong, recorded in the session's local state and
// read by the host. One plain struct on both sides (no CUDA types), so the host never reads
// the record through hand-counted words.
//
// Two kinds, each recorded once (the first fault wins) in a record of its own:
//  * input faults: bad routing or token counts. The op still completed: entries were skipped,
//    counts clamped, nothing was written out of bounds. check_faults() reports and clears them.
//  * fatal faults: the ranks are no longer in step, or a peer did not arrive in time. The
//    session refuses every later collective launch (such a launch only tells the peers and,
//    for combine, writes NaN into its output) until it is destroyed; never cleared.

#include <cstdint>
#include <string>
#include <string_view>

namespace epgraph::comm {

enum class fault_code : std::int32_t {
  none = 0,
  // input faults
  expert_id_out_of_range = 1,  ///< entry skipped
  token_count_above_max = 2,   ///< clamped to max_tokens_per_rank
  token_count_negative = 3,    ///< treated as 0
  expert_repeated = 4,         ///< expert-major permute: a token names one expert twice; the repeat gives no row
  expert_rows_over_capacity = 5,  ///< masked expert-major form: rows past a slot's capacity dropped
  // fatal faults
  collective_out_of_step = 16,  ///< a peer's collective launch with the same number is another op
  peer_timeout = 17,            ///< peers did not reach this collective within the deadline
  peer_stopped = 18,            ///< a peer had a fatal fault or left the session
  lookback_timeout = 19,        ///< the CTAs of one launch were not all resident within the deadline
  overlapping_launch = 20,      ///< two collective launches of this session ran at the same time
  local_stage_failed = 21,      ///< a step node failed on this rank; its combine ran only to keep peers in step
  session_left = 22,            ///< this rank left the session (abort(), or teardown while unwinding)
  exchange_timeout = 23,        ///< ranks of other domains did not complete an exchange within the deadline
};

constexpr bool is_fatal(fault_code c) noexcept { return static_cast<std::int32_t>(c) >= 16; }
std::string_view to_string(fault_code c) noexcept;

/// The collective op a launch is, as its progress word shows it to the peers.
enum class collective_kind : std::uint32_t { none = 0, dispatch = 1, combine = 2, stopped = 3 };
std::string_view to_string(collective_kind k) noexcept;

struct fault_record {
  fault_code code = fault_code::none;
  std::int32_t token = -1;  ///< input faults: the token (or -1); expert_repeated: its receive slot
  std::int32_t entry = -1;  ///< input faults: the top-k entry (or -1); exchange_timeout: 1 when this
                            ///< rank's dispatch kernel of that exchange did not launch
  std::int32_t value = 0;   ///< input faults: the offending value (expert_rows_over_capacity: rows dropped,
                            ///< entry: the local expert slot); local_stage_failed: the node's position;
                            ///< exchange_timeout: the seconds waited
  std::int32_t peer = -1;   ///< fatal faults: the peer involved (or -1); expert_repeated: the source rank
  collective_kind op = collective_kind::none;  ///< fatal faults: this rank's op
  std::uint64_t seq = 0;        ///< fatal faults: this rank's collective number (1 = the first launch);
                                ///< exchange_timeout: that of the dispatch the exchange follows
  std::uint64_t peer_word = 0;  ///< out of step, stopped: the peer's progress word (progress.hpp)
  std::uint64_t missing = 0;    ///< peer_timeout, exchange_timeout: bit p set for every peer p that did not arrive
};

struct device_faults {
  fault_record input;
  fault_record fatal;
  /// The fatal record if there is one, else the input record.
  const fault_record& first() const noexcept { return fatal.code != fault_code::none ? fatal : input; }
};

/// One line: what happened, with the token, entry and value, or the peers and collective numbers.
std::string describe(const fault_record& f);

}  // namespace epgraph::comm
