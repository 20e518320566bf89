#pragma once
// epg-bench: options, one measured configuration, and the report writers.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "epgraph/sim/problem.hpp"

namespace epgraph::bench {

struct options {
  std::vector<int> tokens{1, 128, 512, 4096};
  std::vector<std::string> payloads{"bf16", "fp8"};  ///< fp8 = e4m3 bytes + 1x128 fp32 scales
  int hidden = 7168, top_k = 8, experts = 256;
  sim::routing dist = sim::routing::uniform;
  int replays = 200, warmup = 20, ctas = 64, threads = 512;
  int ops_per_graph = 10;  ///< back-to-back ops in each timed graph (time is per op)
  std::uint64_t seed = 1;
  std::string out = "epg-bench";  ///< writes <out>.json and <out>.csv
};
std::optional<options> parse_options(const std::vector<std::string>& args, std::string* help = nullptr);

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
void print_row(const result& r);
void write_json(const std::string& path, const std::vector<result>& results);
void write_csv(const std::string& path, const std::vector<result>& results);

}  // namespace epgraph::bench
