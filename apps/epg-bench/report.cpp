// epg-bench reports: the traffic model, the workspace breakdown and the stdout table.
#include <cstdio>

#include "bench.hpp"

namespace epgraph::bench {
double expected_destinations(int n, int e, int k) {
  // U = N * (1 - C(E - E/N, k) / C(E, k))
  double ratio = 1;
  for (int i = 0; i < k; ++i) ratio *= double(e - e / n - i) / double(e - i);
  return n * (1 - ratio);
}

std::string nccl_version_string(int code) {
  // NCCL >= 2.9 encodes major*10000 + minor*100 + patch.
  return std::to_string(code / 10000) + "." + std::to_string(code % 10000 / 100) + "." + std::to_string(code % 100);
}

std::vector<workspace_part> workspace_parts(const comm::workspace_layout& l, const comm::ep_config& config) {
  // The regions of each allocation, then its alignment and rounding gaps as one "padding" part,
  // so the parts add up to the allocation without counting anything twice.
  std::vector<std::string> payload_names;
  for (const auto& p : config.payloads) payload_names.push_back(p.name);
  std::vector<workspace_part> parts;
  const std::vector<comm::named_region> regions = comm::list_regions(l, payload_names);
  for (const auto& [section, allocated] :
       {std::pair{"window", l.window_bytes}, std::pair{"local", l.local_bytes}, std::pair{"remote", l.remote_bytes}}) {
    if (allocated == 0) continue;  // no remote state with one domain
    std::size_t used = 0;
    for (const comm::named_region& r : regions)
      if (r.section == section) {
        parts.push_back({r.section + "." + r.name, r.where.bytes});
        used += r.where.bytes;
      }
    parts.push_back({std::string(section) + ".padding", allocated - used});
  }
  return parts;
}

std::size_t workspace_bytes(const result& r, std::string_view prefix) {
  std::size_t sum = 0;
  for (const auto& part : r.workspace)
    if (part.name.starts_with(prefix)) sum += part.bytes;
  return sum;
}

void print_header() {
  std::printf("%-7s %8s %-3s %-3s %4s %5s %3s %4s %-8s %-7s %6s | %8s %9s %7s | %8s %9s %7s | %8s %8s | %8s %8s %8s | %6s %6s | %7s %7s | %7s\n",
              "done", "elapsed", "EP", "L", "CTAs", "H", "k", "E", "routing", "payload", "T", "disp us", "wire GB/s", "logicGB",
              "comb us", "wire GB/s", "logicGB", "nccl d", "nccl c", "lsa d", "lsa c", "lsa pc", "vsNCd", "vsNCc", "qdisp", "q+disp", "fp8 c");
}

namespace {
std::string clock_text(double seconds) {  // h:mm:ss, or m:ss under an hour
  const long s = static_cast<long>(seconds);
  char text[32];
  if (s >= 3600)
    std::snprintf(text, sizeof text, "%ld:%02ld:%02ld", s / 3600, s / 60 % 60, s % 60);
  else
    std::snprintf(text, sizeof text, "%ld:%02ld", s / 60, s % 60);
  return text;
}
std::string us_text(double us) {  // "-" for an op the row did not time
  if (us <= 0) return "-";
  char text[32];
  std::snprintf(text, sizeof text, "%.1f", us);
  return text;
}
}  // namespace

void print_row(const result& r, std::size_t done, std::size_t total, double elapsed_seconds) {
  const std::string progress = std::to_string(done) + "/" + std::to_string(total);
  std::printf("%-7s %8s %-3d %-3d %4d %5d %3d %4d %-8s %-7s %6d | %8.1f %9.1f %7.1f | %8.1f %9.1f %7.1f | %8.1f %8.1f | "
              "%8.1f %8.1f %8.1f | %6.2f %6.2f | %7s %7s | %7s\n",
              progress.c_str(), clock_text(elapsed_seconds).c_str(), r.ep, r.domain_size, r.ctas, r.hidden, r.top_k, r.experts,
              r.routing.c_str(), r.payload.c_str(), r.tokens, r.dispatch.median,
              gbps(r.wire_dispatch_bytes, r.dispatch.median), gbps(r.logical_dispatch_bytes, r.dispatch.median),
              r.combine.median, gbps(r.wire_combine_bytes, r.combine.median),
              gbps(r.logical_combine_bytes, r.combine.median), r.nccl_dispatch.median, r.nccl_combine.median,
              r.lsa_dispatch.median, r.lsa_combine.median, r.lsa_pull_combine.median, r.nccl_dispatch.median / r.dispatch.median,
              r.nccl_combine.median / r.combine.median, us_text(r.quantized_dispatch.median).c_str(),
              us_text(r.quantize_then_dispatch.median).c_str(), us_text(r.fp8_combine.median).c_str());
  std::fflush(stdout);
}

std::string table_legend() {
  return R"(Table columns (one row per configuration; times are per op: the median over the timed
graph replays of the slowest rank, each replay divided by --ops-per-graph):
  done       configurations finished / configurations in the sweep
  elapsed    wall time since the first configuration started (m:ss or h:mm:ss)
  EP         ranks (GPUs) in the expert-parallel group
  L          ranks per NVLink domain (--domain-size); ranks of other domains get fixed slabs of
             rows by NCCL send/recv, the NCCL baseline still moves exactly the routed bytes
  CTAs       CTAs per dispatch/combine launch and LSA baseline (--ctas): the SM budget
  H, k, E    hidden size, experts per token (top-k), number of experts
  routing    routing distribution of the draw (uniform, skewed, one-rank)
  payload    dispatch payload: bf16 rows, or fp8 (e4m3 rows + 1x128 fp32 scales); top-k ids and
             weights travel too. Combine always returns bf16 rows of H elements
  T          tokens per rank
  disp us    epgraph dispatch, microseconds per op
  comb us    epgraph combine, microseconds per op
  wire GB/s  remote bytes / time: the token bytes a rank sends to other ranks (a token goes once
             to each distinct destination rank; its copy to itself is not counted), mean over
             ranks. Same convention as nccl-tests' busbw for all-to-all (algbw x (N-1)/N); the
             floor at NVLink4's 450 GB/s per direction is in the CSV (floor_*_us)
  logicGB    logical GB/s: all bytes a rank receives, its own tokens included / time (DeepEP's
             convention; nccl-tests' algbw). Under uniform routing wire ~ logical x (N-1)/N
  nccl d/c   NCCL grouped ncclSend/ncclRecv moving exactly each pair's dispatch/combine bytes of
             the same routing (what a user with host-known counts would write), us per op
  lsa d/c    a plain device-API LSA copy of the same bytes plus one barrier: the primitive with
             no routing work (not a tuned copy), us per op
  lsa pc     a plain device-API LSA pull of combine's bytes after one barrier, as combine (8
             loads in flight per thread): combine's barrier and loads without its routing and
             sums, us per op
  vsNCd/c    NCCL time / epgraph time for dispatch/combine: above 1, epgraph is faster
  qdisp      fp8 rows (--quantize fp8): the quantizing dispatch, bf16 rows in (disp us is then
             the dispatch of rows quantized before), us per op; "-" for other rows
  q+disp     fp8 rows: quantize_rows_op, then the fp8 dispatch, as one op, us
  fp8 c      the FP8 combine (--combine-precision fp8): e4m3 rows + 1x128 scales pulled,
             dequantized and summed in fp32, us per op ("comb us" is the exact bf16 combine)
)";
}

}  // namespace epgraph::bench
