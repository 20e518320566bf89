#pragma once
// epg-demo's command line (Boost.ProgramOptions). Parsing is separate from running so the
// host-only tests can check defaults and rejections.
#include <optional>
#include <string>
#include <vector>

#include "epgraph/comm/ep_config.hpp"
#include "epgraph/sim/problem.hpp"

namespace epgraph::demo {

enum class variant { zero_copy, staged, both };
/// Where the expert stage reads and writes: the receive slots ([src][slot], the variants above)
/// or expert-major rows (permute before it, weighted un-permute after it).
enum class layout { source_major, expert_major };

struct options {
  sim::problem problem;  ///< ep_size is filled from the MPI world at run time
  int steps = 200;
  variant which = variant::both;  ///< source-major layout only
  layout rows = layout::source_major;
  bool masked = false;  ///< expert-major: DeepGEMM's masked form instead of the packed one
  bool indexed = false;  ///< expert-major: rows gathered by index from the receive buffers (no copy)
  int num_ctas = 64;
  int threads_per_cta = 512;
  double watchdog_seconds = 120.0;  ///< host watchdog per step (0 = off)
  double deadline_seconds = 30.0;   ///< the session's deadline: device waits end with a fault (0 = off)
  int remote_ctas = comm::ep_config{}.remote_ctas;  ///< CTAs of each exchange between domains (0 = NCCL's)
  /// Host comparison, check_faults and the timed sample on steps 1, 1+N, ... and the last; the
  /// device checks every step. Default 10: at T=4096 one host check takes seconds.
  int host_check_every = 10;
  int stall_rank = -1;       ///< fault injection: this rank stops replaying at stall_step
  int stall_step = -1;
};

/// Parses argv (without the program name). Returns nullopt after rendering --help into
/// *help_text; throws epgraph::comm::error (domain config) with the option name on bad values
/// and on stray words. Checks what needs no rank count; validate() does the rest.
std::optional<options> parse_options(const std::vector<std::string>& args, std::string* help_text = nullptr);

/// The session config the demo creates: the problem's (sim::make_config) with the CTA grid
/// and the deadline of these options, on o.problem.ep_size ranks.
comm::ep_config session_config(const options& o);

/// Checks the options against `ranks` MPI ranks before any GPU work: the library's own
/// comm::validate on session_config (experts divisible by the ranks, top-k <= experts, tokens
/// >= 1, ...) and the --inject-stall rank. Throws a config error that names the demo's option
/// (--experts, not num_experts) and keeps the library's range and advice.
void validate(const options& o, int ranks);

}  // namespace epgraph::demo
