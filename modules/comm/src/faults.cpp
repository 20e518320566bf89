#include "epgraph/comm/faults.hpp"

#include <sstream>

#include "epgraph/comm/progress.hpp"

namespace epgraph::comm {

std::string_view to_string(fault_code c) noexcept {
  switch (c) {
    case fault_code::none: return "none";
    case fault_code::expert_id_out_of_range: return "expert id out of range (entry skipped)";
    case fault_code::token_count_above_max: return "token count above max_tokens_per_rank (clamped)";
    case fault_code::token_count_negative: return "negative token count (treated as 0)";
    case fault_code::expert_repeated: return "a token names one expert twice (the repeat gives no expert-major row)";
    case fault_code::expert_rows_over_capacity:
      return "expert-major rows over the masked capacity (dropped; raise expert_major_spec.capacity)";
    case fault_code::collective_out_of_step: return "collective out of step";
    case fault_code::peer_timeout: return "peers did not arrive within the deadline";
    case fault_code::peer_stopped: return "peer stopped";
    case fault_code::lookback_timeout: return "dispatch CTAs not co-resident within the deadline";
    case fault_code::overlapping_launch: return "overlapping collective launches";
    case fault_code::local_stage_failed: return "a step node failed on this rank";
    case fault_code::session_left: return "this rank left the session";
    case fault_code::exchange_timeout: return "an exchange with other NVLink domains timed out";
  }
  return "unknown fault";
}

std::string_view to_string(collective_kind k) noexcept {
  switch (k) {
    case collective_kind::none: return "none";
    case collective_kind::dispatch: return "dispatch";
    case collective_kind::combine: return "combine";
    case collective_kind::stopped: return "stopped";
  }
  return "unknown";
}

namespace {
std::string collective(std::uint64_t seq, collective_kind kind) {
  std::ostringstream out;
  out << '#' << seq << " (" << to_string(kind) << ')';
  return out.str();
}
}  // namespace

std::string describe(const fault_record& f) {
  std::ostringstream out;
  out << to_string(f.code);
  const std::string mine = collective(f.seq, f.op);
  switch (f.code) {
    case fault_code::none: break;
    case fault_code::expert_id_out_of_range:
    case fault_code::token_count_above_max:
    case fault_code::token_count_negative:
      if (f.token >= 0) out << ": token " << f.token;
      if (f.entry >= 0) out << ", top-k entry " << f.entry;
      out << ", value " << f.value;
      break;
    case fault_code::expert_repeated:
      out << ": the token in receive slot " << f.token << " from rank " << f.peer << ", top-k entry " << f.entry
          << ", expert " << f.value;
      break;
    case fault_code::expert_rows_over_capacity:
      out << ": local expert slot " << f.entry << " lost " << f.value << " rows";
      break;
    case fault_code::collective_out_of_step:
      out << ": this rank's collective " << mine << " met rank " << f.peer << "'s collective "
          << collective(progress_seq(f.peer_word), progress_kind(f.peer_word))
          << " (the ranks did not launch the same sequence of dispatch and combine)";
      break;
    case fault_code::peer_timeout: {
      out << ": rank";
      int named = 0;
      for (int p = 0; p < 64; ++p)
        if ((f.missing >> p) & 1u) out << (named++ ? ", " : " ") << p;
      out << " did not reach collective " << mine << " (stalled, dead, or launching fewer collectives)";
      break;
    }
    case fault_code::peer_stopped:
      out << ": rank " << f.peer
          << (progress_seq(f.peer_word) == 0 ? " left the session (aborted, or unwinding from an error)"
                                              : " had a fatal fault at its collective #" +
                                                    std::to_string(progress_seq(f.peer_word)))
          << "; seen at this rank's collective " << mine;
      break;
    case fault_code::lookback_timeout:
      out << " at collective " << mine
          << ": another kernel held the SMs (num_ctas too large for what runs beside it)";
      break;
    case fault_code::overlapping_launch:
      out << " at collective " << mine << ": a session's collective ops must run one at a time, in one order";
      break;
    case fault_code::local_stage_failed:
      out << ": node " << f.value << " of the step failed to enqueue; its collectives ran only to keep the peers in step";
      break;
    case fault_code::session_left:
      out << " (abort(), or its teardown while unwinding from an error)";
      break;
    case fault_code::exchange_timeout: {
      out << ": still waiting for rank";
      int named = 0;
      for (int p = 0; p < 64; ++p)
        if ((f.missing >> p) & 1u) out << (named++ ? ", " : " ") << p;
      const bool unlaunched = f.op != collective_kind::combine && f.entry == 1;
      if (unlaunched && f.seq == 0) out << " in the exchange of the first dispatch, whose kernel did not launch here";
      else if (unlaunched) out << " in the exchange of the dispatch after #" << f.seq << ", whose kernel did not launch here";
      else if (f.op != collective_kind::combine) out << " in the exchange of dispatch #" << f.seq;
      else if (f.seq == 0) out << " in the combine exchange before any dispatch";
      else out << " in the combine exchange after dispatch #" << f.seq;
      out << " (" << f.value
          << " s; a rank of another domain stalled, died, or launched another sequence of ops); this rank revoked "
             "its communicator between domains";
      break;
    }
  }
  return out.str();
}

}  // namespace epgraph::comm
