#pragma once
// epg-bench: options, one measured configuration, and the report writers.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "epgraph/sim/problem.hpp"

namespace epgraph::bench {

/// One problem shape of a sweep; each gets its own session and its own routing draw.
struct shape {
  int hidden = 7168, top_k = 8, experts = 256;
  sim::routing dist = sim::routing::uniform;
  bool operator==(const shape&) const = default;
};

struct options {
  // Swept (comma-separated on the command line): every combination is measured.
  std::vector<int> tokens{1, 128, 512, 4096};
  std::vector<std::string> payloads{"bf16", "fp8"};  ///< fp8 = e4m3 bytes + 1x128 fp32 scales
  std::vector<int> hidden{7168}, top_k{8}, experts{256};
  std::vector<sim::routing> routings{sim::routing::uniform};
  // Fixed for the whole run.
  int replays = 200, warmup = 20, ctas = 64, threads = 512;
  int ops_per_graph = 10;  ///< back-to-back ops in each timed graph (time is per op)
  std::uint64_t seed = 1;
  std::string out = "epg-bench";  ///< writes <out>.json and <out>.csv
};
std::optional<options> parse_options(const std::vector<std::string>& args, std::string* help = nullptr);

/// Every combination of the swept shape parameters, routing varying fastest, then experts,
/// top-k and hidden. Pure.
std::vector<shape> sweep_shapes(const options& o);

/// The problem and session config of one measurement (fp8: e4m3 bytes + 1x128 fp32 scales).
sim::problem make_problem(const shape& s, int ep_size, int tokens, std::uint64_t seed);
comm::ep_config make_config(const sim::problem& p, const std::string& payload, int ctas, int threads);

/// Checks every swept configuration against `ep_size` ranks before anything runs, so a sweep
/// never dies halfway: throws a config error naming the shape and the failing field.
void check_sweep(const options& o, int ep_size);

struct stats {
  double p10 = 0, median = 0, p90 = 0;  ///< microseconds, slowest rank
};

struct result {
  int ep = 0, tokens = 0, hidden = 0, top_k = 0, experts = 0;
  std::string payload, routing, gpu;
  double dispatch_bytes_per_token = 0, combine_bytes_per_token = 0;
  double wire_dispatch_bytes = 0, logical_dispatch_bytes = 0;  ///< per rank (mean)
  double wire_combine_bytes = 0, logical_combine_bytes = 0;
  stats dispatch, combine, nccl_dispatch, nccl_combine, lsa_dispatch, lsa_combine;
  double model_wire_dispatch_bytes = 0;  ///< traffic model: T * U * (N-1)/N * bytes_per_token
  std::vector<std::pair<std::string, std::size_t>> workspace;  ///< region, bytes per GPU
};

/// GB/s for bytes moved in microseconds.
inline double gbps(double bytes, double us) { return us > 0 ? bytes / (us * 1e3) : 0; }
/// Expected distinct destination ranks per token (uniform top-k without replacement).
double expected_destinations(int ranks, int experts, int top_k);

void print_header();
/// One table row, prefixed with "done/total" so long sweeps show their progress.
void print_row(const result& r, std::size_t done, std::size_t total);
void write_json(const std::string& path, const std::vector<result>& results);
void write_csv(const std::string& path, const std::vector<result>& results);

}  // namespace epgraph::bench
