// epg-bench options: parsing, the sweep, and the session config of one measurement.
#include <cstring>
#include <sstream>

#include "bench.hpp"
#include "cli.hpp"
#include "epgraph/comm/error.hpp"

namespace po = boost::program_options;

namespace epgraph::bench {
namespace {
template <class T>
std::vector<T> split(const std::string& list, const char* option) {
  std::vector<T> out;
  std::stringstream in(list);
  for (std::string item; std::getline(in, item, ',');) {
    std::stringstream one(item);
    T v;
    if (!(one >> v) || !(one >> std::ws).eof())
      comm::throw_config_error(option, "has an invalid entry '" + item + "'", "use a comma-separated list");
    out.push_back(v);
  }
  if (out.empty()) comm::throw_config_error(option, "is empty");
  return out;
}

void require_positive(const std::vector<int>& values, const char* option) {
  for (int v : values)
    if (v < 1) comm::throw_config_error(option, "has " + std::to_string(v) + "; every entry must be positive");
}

std::string join(const std::vector<int>& values) {
  std::string out;
  for (int v : values) {
    if (!out.empty()) out += ',';
    out += std::to_string(v);
  }
  return out;
}
}  // namespace

std::optional<options> parse_options(const std::vector<std::string>& args, std::string* help) {
  options o;
  std::string tokens = join(o.tokens), payloads = "bf16,fp8", quantize = "fp8", combine_precision = "fp8", hidden = join(o.hidden), top_k = join(o.top_k),
              experts = join(o.experts), routing = "uniform,skewed", domains = join(o.domain_sizes), ctas = join(o.ctas);
  po::options_description desc("epg-bench: dispatch/combine timings with NCCL baselines in the same run\n"
                               "usage: mpirun -np <gpus> epg-bench [options]\n"
                               "Lists are comma-separated; every combination is measured");
  // clang-format off
  desc.add_options()
    ("help,h", "print this help")
    ("tokens", po::value(&tokens)->default_value(tokens), "tokens per rank (list)")
    ("payload", po::value(&payloads)->default_value(payloads), "dispatch payloads (list): bf16, fp8 (e4m3 + 1x128 fp32 scales)")
    ("hidden", po::value(&hidden)->default_value(hidden), "hidden sizes (list)")
    ("top-k", po::value(&top_k)->default_value(top_k), "experts per token (list)")
    ("experts", po::value(&experts)->default_value(experts), "numbers of experts (list)")
    ("routing", po::value(&routing)->default_value(routing), "routing distributions (list): uniform, skewed, one-rank; the "
                                                            "standard run reports skew beside uniform (issue 16)")
    ("domain-size", po::value(&domains)->default_value(domains), "ranks per NVLink domain (list; 0 = the NVLink team NCCL finds): "
                                                                 "peers in other domains are reached by NCCL send/recv")
    ("replays", po::value(&o.replays)->default_value(o.replays), "timed graph replays per measurement")
    ("ops-per-graph", po::value(&o.ops_per_graph)->default_value(o.ops_per_graph), "back-to-back ops captured in each timed graph; times are per op")
    ("warmup", po::value(&o.warmup)->default_value(o.warmup), "untimed replays first")
    ("ctas", po::value(&ctas)->default_value(ctas), "CTAs per dispatch/combine and the LSA baseline (list): the SM "
                                                   "budget, e.g. 8,16,24,32,64")
    ("threads", po::value(&o.threads)->default_value(o.threads), "threads per CTA")
    ("seed", po::value(&o.seed)->default_value(o.seed), "routing seed")
    ("deadline", po::value(&o.deadline_seconds)->default_value(o.deadline_seconds), "session deadline in seconds (0 = "
                                                                                     "off: no device deadline, no exchange guard)")
    ("remote-ctas", po::value(&o.remote_ctas)->default_value(o.remote_ctas), "several domains: CTAs of each NCCL "
                                                                           "exchange between domains (0 = NCCL's choice)")
    ("plain-launch", po::bool_switch(&o.plain_launch), "sessions launch their kernels plainly, without programmatic "
                                                       "dependent launch (ep_config::programmatic_launch = false)")
    ("placement-table", po::bool_switch(&o.placement_table), "sessions keep an expert placement table (the contiguous "
                                                             "one): dispatch picks replicas and sends physical ids")
    ("quantize", po::value(&quantize)->default_value(quantize), "fp8: fp8 rows also time the quantizing dispatch (bf16 "
                                                              "rows in) and quantize_rows_op + the fp8 dispatch; none: not")
    ("combine-precision", po::value(&combine_precision)->default_value(combine_precision),
     "fp8: every row also times the FP8 combine and its quantizing prepare-combine (H % 16 == 0); exact: not (the "
     "exact BF16 combine is always timed)")
    ("trace", po::bool_switch(&o.trace), "every rank prints each phase of each configuration to stderr (to find where "
                                         "a run stalls)")
    ("out", po::value(&o.out)->default_value(o.out), "output prefix (rank 0 writes; missing folders are created): "
                                                      "<out>.csv gets each row as it finishes, <out>.json is written "
                                                      "complete at the end; both are checked before the sweep starts");
  // clang-format on
  if (!cli::parse(desc, args, "epg-bench", help)) {
    if (help) help->append("\n").append(table_legend()).append("\n").append(columns_legend());
    return std::nullopt;
  }
  o.tokens = split<int>(tokens, "--tokens");
  o.hidden = split<int>(hidden, "--hidden");
  o.top_k = split<int>(top_k, "--top-k");
  o.experts = split<int>(experts, "--experts");
  require_positive(o.tokens, "--tokens");
  require_positive(o.hidden, "--hidden");
  require_positive(o.top_k, "--top-k");
  require_positive(o.experts, "--experts");
  o.ctas = split<int>(ctas, "--ctas");
  require_positive(o.ctas, "--ctas");
  o.domain_sizes = split<int>(domains, "--domain-size");
  for (int L : o.domain_sizes)
    if (L < 0) comm::throw_config_error("--domain-size", "has " + std::to_string(L), "use 0 (the NVLink team) or a divisor of the rank count");
  o.payloads = split<std::string>(payloads, "--payload");
  for (const auto& p : o.payloads)
    if (p != "bf16" && p != "fp8") comm::throw_config_error("--payload", "has '" + p + "'", "use bf16 or fp8");
  if (quantize != "fp8" && quantize != "none")
    comm::throw_config_error("--quantize", "is '" + quantize + "'", "use fp8 or none");
  o.quantize = quantize == "fp8";
  if (combine_precision != "fp8" && combine_precision != "exact")
    comm::throw_config_error("--combine-precision", "is '" + combine_precision + "'",
                             "use fp8 or exact (the bench's rows are bf16: a bf16 combine is the exact one)");
  o.fp8_combine = combine_precision == "fp8";
  o.routings.clear();
  for (const auto& name : split<std::string>(routing, "--routing")) o.routings.push_back(sim::parse_routing(name));
  if (o.replays < 5) comm::throw_config_error("--replays", "must be at least 5");
  if (!(o.deadline_seconds >= 0 && o.deadline_seconds <= comm::max_deadline_seconds))
    comm::throw_config_error("--deadline", "must be between 0 and " + std::to_string(comm::max_deadline_seconds) + " seconds");
  if (o.ops_per_graph < 1) comm::throw_config_error("--ops-per-graph", "must be at least 1");
  if (o.remote_ctas < 0 || o.remote_ctas > comm::max_remote_ctas)
    comm::throw_config_error("--remote-ctas", "is " + std::to_string(o.remote_ctas),
                             "use 0 (NCCL's choice) to " + std::to_string(comm::max_remote_ctas));
  if (o.out.empty() || o.out.back() == '/')
    comm::throw_config_error("--out", "is '" + o.out + "', not a file prefix", "give one such as results/run");
  return o;
}

std::vector<shape> sweep_shapes(const options& o) {
  std::vector<shape> out;
  for (int h : o.hidden)
    for (int k : o.top_k)
      for (int e : o.experts)
        for (sim::routing r : o.routings)
          for (int L : o.domain_sizes)
            for (int c : o.ctas) out.push_back({h, k, e, r, L, c});
  return out;
}

sim::problem make_problem(const shape& s, int ep_size, int tokens, std::uint64_t seed) {
  sim::problem p;
  p.ep_size = ep_size;
  p.max_tokens = p.min_tokens = tokens;
  p.top_k = s.top_k;
  p.num_experts = s.experts;
  p.hidden = s.hidden;
  p.dist = s.dist;
  p.domain_size = s.domain_size;
  p.seed = seed * 1000 + static_cast<std::uint64_t>(tokens);
  return p;
}

comm::ep_config make_config(const sim::problem& p, const std::string& payload, int ctas, int threads) {
  comm::ep_config cfg = sim::make_config(p, ctas, threads);
  if (payload == "fp8") {
    const auto hidden = static_cast<std::size_t>(p.hidden);
    cfg.payloads = {{"hidden_e4m3", hidden},
                    {"scales_1x128", (hidden + 127) / 128 * sizeof(float)},
                    {"weights", static_cast<std::size_t>(p.top_k) * sizeof(float)}};
  }
  return cfg;
}

std::vector<std::uint16_t> bf16_rows(int tokens, int hidden, std::uint64_t seed) {
  std::vector<std::uint16_t> out(std::size_t(tokens) * std::size_t(hidden));
  for (std::size_t i = 0; i < out.size(); ++i) {
    const std::uint32_t h = sim::mix(seed * 0x9e3779b97f4a7c15ull + i);
    float x = (static_cast<float>(h & 0xffff) - 32768.0f) / 8192.0f;  // [-4, 4)
    if ((h >> 16) % 64 == 0) x *= 40.0f;
    std::uint32_t bits;
    std::memcpy(&bits, &x, sizeof bits);
    out[i] = static_cast<std::uint16_t>(bits >> 16);
  }
  return out;
}

kernels::permute_args timed_permute(const comm::ep_config& config) {
  kernels::permute_args args;
  for (std::size_t i = 0; i < config.payloads.size(); ++i)
    if (config.payloads[i].name == "weights") args.weights_payload = static_cast<int>(i);
  args.spec.weights = true;
  return args;
}

comm::ep_config session_config(const options& o, const shape& s, int ep_size, int tokens, const std::string& payload) {
  comm::ep_config cfg = make_config(make_problem(s, ep_size, tokens, o.seed), payload, s.ctas, o.threads);
  cfg.deadline_seconds = o.deadline_seconds;
  cfg.remote_ctas = o.remote_ctas;
  cfg.programmatic_launch = !o.plain_launch;
  if (o.placement_table) cfg.expert_slots_per_rank = cfg.experts_per_rank();
  return cfg;
}

void check_sweep(const options& o, int ep_size) {
  for (const shape& s : sweep_shapes(o))
    for (const auto& payload : o.payloads)
      for (int tokens : o.tokens) {
        try {
          const comm::ep_config config = session_config(o, s, ep_size, tokens, payload);
          comm::validate(config);
          (void)kernels::plan_permute(config, timed_permute(config));  // the permute is timed too
        } catch (const comm::error& e) {
          std::ostringstream what;
          what << "for hidden " << s.hidden << ", top-k " << s.top_k << ", experts " << s.experts << ", domain size "
               << s.domain_size << ", " << s.ctas << " CTAs, " << payload
               << ", T=" << tokens << " on " << ep_size << " ranks it " << e.message();
          comm::throw_config_error(e.call(), what.str(), e.hint());
        }
      }
}

}  // namespace epgraph::bench
