#include "demo_options.hpp"

#include <cmath>

#include "cli.hpp"

#include "epgraph/comm/error.hpp"

namespace po = boost::program_options;

namespace epgraph::demo {

namespace {
// What --quantize and --combine-precision need of the other options (the library checks the
// same at planning; here the message names the demo's options, before any GPU work).
void check_precisions(const options& o) {
  const sim::problem& p = o.problem;
  const std::string dtype(comm::to_string(p.dtype));
  if (p.quantize && p.dtype != comm::element_type::bf16)
    comm::throw_config_error("--quantize", "quantizes bf16 rows but --dtype is " + dtype, "use --dtype bf16");
  if (p.quantize && p.hidden % 8 != 0)
    comm::throw_config_error("--quantize", "needs --hidden % 8 == 0, not " + std::to_string(p.hidden),
                             "use a multiple of 8 (the last 128-block may be partial)");
  if (p.combine == kernels::combine_precision::exact) return;
  const bool fp8 = p.combine == kernels::combine_precision::fp8;
  const std::string name = fp8 ? "fp8" : "bf16";
  if (p.dtype != (fp8 ? comm::element_type::bf16 : comm::element_type::fp32))
    comm::throw_config_error("--combine-precision",
                             "is " + name + " but --dtype is " + dtype,
                             fp8 ? "an FP8 combine quantizes bf16 rows: use --dtype bf16"
                                 : "a bf16 combine rounds fp32 rows: use --dtype fp32");
  if (p.hidden % (fp8 ? 16 : 8) != 0)
    comm::throw_config_error("--combine-precision", "is " + name + " but --hidden is " + std::to_string(p.hidden),
                             fp8 ? "use a multiple of 16" : "use a multiple of 8");
  if (o.which == variant::zero_copy)
    comm::throw_config_error("--combine-precision", "is " + name + " beside --variant zero-copy",
                             "prepare-combine reduces the rows: use --variant staged (or both, which then runs "
                             "staged only)");
  if (o.rows == layout::expert_major)
    comm::throw_config_error("--combine-precision", "is " + name + " beside --layout expert-major",
                             "the un-permute writes the combine rows: use --combine-precision exact");
}
}  // namespace

std::optional<options> parse_options(const std::vector<std::string>& args, std::string* help_text) {
  options o;
  std::string dtype = "bf16", routing = "uniform", which = "both", stall, rows = "source-major", form = "packed",
              quantize = "none", combine_precision = "exact";
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
    ("variant", po::value(&which)->default_value("both"), "expert output: zero-copy (in the workspace), staged (prepare-combine), both "
                                                          "(source-major layout)")
    ("layout", po::value(&rows)->default_value("source-major"), "what the expert stage sees: source-major (the receive slots) or "
                                                               "expert-major (permute, grouped rows, weighted un-permute)")
    ("form", po::value(&form)->default_value("packed"), "expert-major form: packed (offsets) or masked (capacity + counts)")
    ("indexed", po::bool_switch(&o.indexed), "expert-major: rows stay in the receive buffers and the expert "
                                             "stage gathers them by index (expert_major_spec::copy_rows = false)")
    ("quantize", po::value(&quantize)->default_value(quantize), "dispatch quantizes the bf16 hidden rows to FP8 e4m3 "
                                                              "with 1x128 scales: none, fp8 (fp32 scales), fp8-ue8m0 "
                                                              "(power-of-two scales); the experts read code x scale")
    ("combine-precision", po::value(&combine_precision)->default_value(combine_precision),
     "what combine pulls: exact (the expert output), fp8 (prepare-combine quantizes bf16 rows), bf16 (prepare-combine "
     "rounds fp32 rows, --dtype fp32); reduced precisions run the staged variant only")
    ("routing", po::value(&routing)->default_value("uniform"), "routing distribution: uniform, skewed, one-rank")
    ("seed", po::value(&o.problem.seed)->default_value(1), "random seed")
    ("domain-size", po::value(&o.problem.domain_size)->default_value(0), "ranks per NVLink domain (0 = the NVLink team NCCL finds); "
                                                                     "ranks of other domains are reached by NCCL send/recv")
    ("ctas", po::value(&o.num_ctas)->default_value(64), "CTAs per dispatch/combine launch (== LSA barriers)")
    ("remote-ctas", po::value(&o.remote_ctas)->default_value(o.remote_ctas), "several domains: CTAs of each NCCL exchange between "
                                                                "domains (0 = NCCL's choice)")
    ("threads", po::value(&o.threads_per_cta)->default_value(512), "threads per CTA")
    ("watchdog", po::value(&o.watchdog_seconds)->default_value(120.0), "abort with a diagnostic if a step takes longer (seconds, 0 = off)")
    ("deadline", po::value(&o.deadline_seconds)->default_value(30.0), "session deadline: a peer that does not arrive within it is a fault naming it (seconds, 0 = off)")
    ("host-check-every", po::value(&o.host_check_every)->default_value(10),
     "what is checked when: on every step a GPU kernel compares every output element with the reference, "
     "bit-exactly; on steps 1, 1+N, 1+2N, ... and the last, the output is also copied to the host and compared "
     "with an independent CPU reference (seconds per step at T=4096), session faults are collected and the step "
     "is timed for the summary (1 = every step)")
    ("inject-stall", po::value(&stall), "fault injection RANK:STEP: that rank stops replaying at that step (tests the watchdog)");
  // clang-format on
  if (!cli::parse(desc, args, "epg-demo", help_text)) return std::nullopt;
  // The parsers name the library's field; the user typed the option.
  try {
    o.problem.dtype = comm::parse_element_type(dtype);
  } catch (const comm::error& e) {
    comm::throw_config_error("--dtype", e.message(), e.hint());
  }
  try {
    o.problem.dist = sim::parse_routing(routing);
  } catch (const comm::error& e) {
    comm::throw_config_error("--routing", e.message(), e.hint());
  }
  if (which == "zero-copy") o.which = variant::zero_copy;
  else if (which == "staged") o.which = variant::staged;
  else if (which == "both") o.which = variant::both;
  else comm::throw_config_error("--variant", "is '" + which + "'", "use zero-copy, staged or both");
  if (rows == "source-major") o.rows = layout::source_major;
  else if (rows == "expert-major") o.rows = layout::expert_major;
  else comm::throw_config_error("--layout", "is '" + rows + "'", "use source-major or expert-major");
  o.problem.expert_major = o.rows == layout::expert_major;  // the references follow its order
  if (quantize == "none" || quantize == "fp8" || quantize == "fp8-ue8m0") {
    o.problem.quantize = quantize != "none";
    o.problem.scales = quantize == "fp8-ue8m0" ? kernels::fp8::scale_format::ue8m0 : kernels::fp8::scale_format::fp32;
  } else {
    comm::throw_config_error("--quantize", "is '" + quantize + "'", "use none, fp8 or fp8-ue8m0");
  }
  if (combine_precision == "exact") o.problem.combine = kernels::combine_precision::exact;
  else if (combine_precision == "fp8") o.problem.combine = kernels::combine_precision::fp8;
  else if (combine_precision == "bf16") o.problem.combine = kernels::combine_precision::bf16;
  else comm::throw_config_error("--combine-precision", "is '" + combine_precision + "'", "use exact, fp8 or bf16");
  check_precisions(o);
  if (form == "packed" || form == "masked") o.masked = form == "masked";
  else comm::throw_config_error("--form", "is '" + form + "'", "use packed or masked");
  if (o.indexed && o.rows != layout::expert_major)
    comm::throw_config_error("--indexed", "is set without --layout expert-major",
                             "add --layout expert-major (the source-major stage reads the receive slots anyway)");
  if (o.steps < 1) comm::throw_config_error("--steps", "is " + std::to_string(o.steps), "use at least 1");
  if (o.host_check_every < 1)
    comm::throw_config_error("--host-check-every", "is " + std::to_string(o.host_check_every),
                             "use N >= 1 (1 = every step; the device checks every step regardless)");
  if (!stall.empty()) {
    const auto colon = stall.find(':');
    try {
      if (colon == std::string::npos) throw std::invalid_argument(stall);
      o.stall_rank = std::stoi(stall.substr(0, colon));
      o.stall_step = std::stoi(stall.substr(colon + 1));
    } catch (const std::exception&) {
      comm::throw_config_error("--inject-stall", "is '" + stall + "'", "use RANK:STEP, e.g. 1:3");
    }
    // A stall that never happens would let a watchdog test pass without testing anything.
    if (o.stall_step < 0 || o.stall_step >= o.steps)
      comm::throw_config_error("--inject-stall", "step " + std::to_string(o.stall_step) + " is not one of the " +
                                                     std::to_string(o.steps) + " steps",
                               "use a STEP in [0, --steps)");
  }
  for (auto [name, value] : {std::pair{"--watchdog", o.watchdog_seconds}, std::pair{"--deadline", o.deadline_seconds}})
    if (!std::isfinite(value) || value < 0)
      comm::throw_config_error(name, "is " + std::to_string(value), "use a finite number of seconds >= 0 (0 = off)");
  return o;
}

comm::ep_config session_config(const options& o) {
  comm::ep_config config = sim::make_config(o.problem, o.num_ctas, o.threads_per_cta);
  config.deadline_seconds = o.deadline_seconds;
  config.remote_ctas = o.remote_ctas;
  return config;
}

namespace {
// The demo option behind each ep_config field, so an error names what the user typed.
std::string option_for(const std::string& field) {
  if (field == "ep_size") return "the rank count (mpirun -np)";
  if (field == "max_tokens_per_rank") return "--tokens";
  if (field == "top_k" || field == "payloads[1].row_bytes") return "--top-k";
  if (field == "num_experts") return "--experts";
  if (field == "hidden" || field == "payloads[0].row_bytes" || field == "payloads[2].row_bytes") return "--hidden";
  if (field == "combine_type") return "--dtype";
  if (field == "num_ctas") return "--ctas";
  if (field == "domain_size") return "--domain-size";
  if (field == "remote_ctas") return "--remote-ctas";
  if (field == "threads_per_cta") return "--threads";
  if (field == "deadline_seconds") return "--deadline";
  return field;
}
}  // namespace

void validate(const options& o, int ranks) {
  options on_ranks = o;
  on_ranks.problem.ep_size = ranks;
  try {
    comm::validate(session_config(on_ranks));  // the same check the session runs, minus the GPU
  } catch (const comm::error& e) {
    if (e.domain() != comm::error_domain::config) throw;
    const std::string option = option_for(e.call());
    std::string hint = e.hint();
    if (hint.empty())
      hint = e.call() == "ep_size" ? "run on fewer ranks: mpirun -np N with N <= " + std::to_string(comm::max_ep_size)
                                   : "change " + option + " to an allowed value; epg-demo --help lists every option";
    comm::throw_config_error(option,
                             e.message() + "; session field " + e.call() + ", ep_size = " + std::to_string(ranks) +
                                 " MPI rank" + (ranks == 1 ? "" : "s"),
                             hint);
  }
  if (o.stall_step >= 0 && (o.stall_rank < 0 || o.stall_rank >= ranks))
    comm::throw_config_error("--inject-stall",
                             "rank " + std::to_string(o.stall_rank) + " is not one of the " + std::to_string(ranks) +
                                 " MPI ranks",
                             "use a RANK in [0, " + std::to_string(ranks) + ")");
}

}  // namespace epgraph::demo
