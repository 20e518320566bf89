#include "demo_options.hpp"

#include <cmath>

#include "cli.hpp"

#include "epgraph/comm/error.hpp"

namespace po = boost::program_options;

namespace epgraph::demo {

std::optional<options> parse_options(const std::vector<std::string>& args, std::string* help_text) {
  options o;
  std::string dtype = "bf16", routing = "uniform", which = "both", stall;
  po::options_description desc("epg-demo: a whole MoE layer step, captured once, replayed and checked\n"
                               "usage: mpirun -np <gpus> epg-demo [options]");
  // clang-format off
  desc.add_options()
    ("help,h", "print this help")
    ("tokens", po::value(&o.problem.max_tokens)->default_value(256), "max tokens per rank; each step draws T in [0, tokens]")
    ("hidden", po::value(&o.problem.hidden)->default_value(7168), "hidden size")
    ("top-k", po::value(&o.problem.top_k)->default_value(8), "experts per token")
    ("experts", po::value(&o.problem.num_experts)->default_value(256), "number of experts (multiple of the rank count)")
    ("dtype", po::value(&dtype)->default_value("bf16"), "hidden/expert-output/output type: bf16, fp16, fp32")
    ("steps", po::value(&o.steps)->default_value(200), "steps per variant")
    ("variant", po::value(&which)->default_value("both"), "expert output: zero-copy (in the workspace), staged (prepare-combine), both")
    ("routing", po::value(&routing)->default_value("uniform"), "routing distribution: uniform, skewed, one-rank")
    ("seed", po::value(&o.problem.seed)->default_value(1), "random seed")
    ("ctas", po::value(&o.num_ctas)->default_value(64), "CTAs per dispatch/combine launch (== LSA barriers)")
    ("threads", po::value(&o.threads_per_cta)->default_value(512), "threads per CTA")
    ("watchdog", po::value(&o.watchdog_seconds)->default_value(120.0), "abort with a diagnostic if a step takes longer (seconds, 0 = off)")
    ("deadline", po::value(&o.deadline_seconds)->default_value(30.0), "session deadline: a peer that does not arrive within it is a fault naming it (seconds, 0 = off)")
    ("host-check-every", po::value(&o.host_check_every)->default_value(1), "compare with the host reference every N steps (the device checks every step)")
    ("inject-stall", po::value(&stall), "fault injection RANK:STEP: that rank stops replaying at that step (tests the watchdog)");
  // clang-format on
  if (!cli::parse(desc, args, "epg-demo", help_text)) return std::nullopt;
  o.problem.dtype = comm::parse_element_type(dtype);
  o.problem.dist = sim::parse_routing(routing);
  if (which == "zero-copy") o.which = variant::zero_copy;
  else if (which == "staged") o.which = variant::staged;
  else if (which == "both") o.which = variant::both;
  else comm::throw_config_error("--variant", "is '" + which + "'", "use zero-copy, staged or both");
  if (o.steps < 1) comm::throw_config_error("--steps", "must be at least 1");
  if (o.host_check_every < 1) comm::throw_config_error("--host-check-every", "must be at least 1");
  if (!stall.empty()) {
    const auto colon = stall.find(':');
    try {
      if (colon == std::string::npos) throw std::invalid_argument(stall);
      o.stall_rank = std::stoi(stall.substr(0, colon));
      o.stall_step = std::stoi(stall.substr(colon + 1));
    } catch (const std::exception&) {
      comm::throw_config_error("--inject-stall", "is '" + stall + "'", "use RANK:STEP, e.g. 1:3");
    }
  }
  for (auto [name, value] : {std::pair{"--watchdog", o.watchdog_seconds}, std::pair{"--deadline", o.deadline_seconds}})
    if (!std::isfinite(value) || value < 0)
      comm::throw_config_error(name, "is " + std::to_string(value), "use a finite number of seconds >= 0 (0 = off)");
  return o;
}

}  // namespace epgraph::demo
