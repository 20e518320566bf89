#pragma once
// epg-demo's command line (Boost.ProgramOptions). Parsing is separate from running so the
// host-only tests can check defaults and rejections.
#include <optional>
#include <string>
#include <vector>

#include "epgraph/sim/problem.hpp"

namespace epgraph::demo {

enum class variant { zero_copy, staged, both };

struct options {
  sim::problem problem;  ///< ep_size is filled from the MPI world at run time
  int steps = 200;
  variant which = variant::both;
  int num_ctas = 64;
  int threads_per_cta = 512;
  double watchdog_seconds = 120.0;  ///< host watchdog per step (0 = off)
  double deadline_seconds = 30.0;   ///< the session's deadline: device waits end with a fault (0 = off)
  int host_check_every = 1;  ///< full host comparison every N steps (device checks every step)
  int stall_rank = -1;       ///< fault injection: this rank stops replaying at stall_step
  int stall_step = -1;
};

/// Parses argv. Returns nullopt after printing --help; throws epgraph::comm::error
/// (domain config) with the option name on bad values.
std::optional<options> parse_options(const std::vector<std::string>& args, std::string* help_text = nullptr);

}  // namespace epgraph::demo
