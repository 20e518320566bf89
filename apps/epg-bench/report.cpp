// epg-bench reports: the traffic model, the stdout table, JSON and CSV.
#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "bench.hpp"

namespace epgraph::bench {
double expected_destinations(int n, int e, int k) {
  // U = N * (1 - C(E - E/N, k) / C(E, k))
  double ratio = 1;
  for (int i = 0; i < k; ++i) ratio *= double(e - e / n - i) / double(e - i);
  return n * (1 - ratio);
}

void print_header() {
  std::printf("%-7s %-3s %5s %3s %4s %-8s %-5s %6s | %8s %8s %7s | %8s %8s %7s | %8s %8s | %8s %8s | %6s %6s\n", "done",
              "EP", "H", "k", "E", "routing", "load", "T", "disp us", "wire GB/s", "logicGB", "comb us", "wire GB/s",
              "logicGB", "nccl d", "nccl c", "lsa d", "lsa c", "vsNCd", "vsNCc");
}

void print_row(const result& r, std::size_t done, std::size_t total) {
  const std::string progress = std::to_string(done) + "/" + std::to_string(total);
  std::printf("%-7s %-3d %5d %3d %4d %-8s %-5s %6d | %8.1f %8.1f %7.1f | %8.1f %8.1f %7.1f | %8.1f %8.1f | %8.1f %8.1f "
              "| %6.2f %6.2f\n",
              progress.c_str(), r.ep, r.hidden, r.top_k, r.experts, r.routing.c_str(), r.payload.c_str(), r.tokens,
              r.dispatch.median, gbps(r.wire_dispatch_bytes, r.dispatch.median),
              gbps(r.logical_dispatch_bytes, r.dispatch.median), r.combine.median,
              gbps(r.wire_combine_bytes, r.combine.median), gbps(r.logical_combine_bytes, r.combine.median),
              r.nccl_dispatch.median, r.nccl_combine.median, r.lsa_dispatch.median, r.lsa_combine.median,
              r.nccl_dispatch.median / r.dispatch.median, r.nccl_combine.median / r.combine.median);
  std::fflush(stdout);
}

namespace {
std::string json_stats(const stats& s) {
  std::ostringstream o;
  o << "{\"p10_us\": " << s.p10 << ", \"median_us\": " << s.median << ", \"p90_us\": " << s.p90 << "}";
  return o.str();
}
}  // namespace

void write_json(const std::string& path, const std::vector<result>& results) {
  std::ofstream out(path);
  out << "[\n";
  for (std::size_t i = 0; i < results.size(); ++i) {
    const result& r = results[i];
    out << "  {\"gpu\": \"" << r.gpu << "\", \"ep\": " << r.ep << ", \"tokens_per_rank\": " << r.tokens
        << ", \"hidden\": " << r.hidden << ", \"top_k\": " << r.top_k << ", \"experts\": " << r.experts
        << ", \"payload\": \"" << r.payload << "\", \"routing\": \"" << r.routing << "\",\n"
        << "   \"dispatch_bytes_per_token\": " << r.dispatch_bytes_per_token
        << ", \"combine_bytes_per_token\": " << r.combine_bytes_per_token
        << ", \"wire_dispatch_bytes\": " << r.wire_dispatch_bytes << ", \"logical_dispatch_bytes\": " << r.logical_dispatch_bytes
        << ", \"wire_combine_bytes\": " << r.wire_combine_bytes << ", \"logical_combine_bytes\": " << r.logical_combine_bytes
        << ", \"model_wire_dispatch_bytes\": " << r.model_wire_dispatch_bytes << ",\n"
        << "   \"dispatch\": " << json_stats(r.dispatch) << ", \"combine\": " << json_stats(r.combine) << ",\n"
        << "   \"nccl_dispatch\": " << json_stats(r.nccl_dispatch) << ", \"nccl_combine\": " << json_stats(r.nccl_combine) << ",\n"
        << "   \"lsa_dispatch\": " << json_stats(r.lsa_dispatch) << ", \"lsa_combine\": " << json_stats(r.lsa_combine) << ",\n"
        << "   \"floor_dispatch_us_at_450GBps\": " << r.wire_dispatch_bytes / 450e3
        << ", \"floor_combine_us_at_450GBps\": " << r.wire_combine_bytes / 450e3 << ",\n   \"workspace_bytes\": {";
    for (std::size_t w = 0; w < r.workspace.size(); ++w)
      out << (w ? ", " : "") << "\"" << r.workspace[w].first << "\": " << r.workspace[w].second;
    out << "}}" << (i + 1 < results.size() ? "," : "") << "\n";
  }
  out << "]\n";
}

void write_csv(const std::string& path, const std::vector<result>& results) {
  std::ofstream out(path);
  out << "gpu,ep,tokens,hidden,top_k,experts,payload,routing,dispatch_us,dispatch_p10_us,dispatch_p90_us,combine_us,"
         "combine_p10_us,combine_p90_us,nccl_dispatch_us,nccl_combine_us,lsa_dispatch_us,lsa_combine_us,"
         "wire_dispatch_GBps,logical_dispatch_GBps,wire_combine_GBps,logical_combine_GBps,floor_dispatch_us,"
         "floor_combine_us,workspace_bytes\n";
  for (const result& r : results) {
    std::size_t ws = 0;
    for (auto& w : r.workspace) ws += w.second;
    out << r.gpu << "," << r.ep << "," << r.tokens << "," << r.hidden << "," << r.top_k << "," << r.experts << ","
        << r.payload << "," << r.routing << "," << r.dispatch.median << "," << r.dispatch.p10 << "," << r.dispatch.p90
        << "," << r.combine.median << "," << r.combine.p10 << "," << r.combine.p90 << "," << r.nccl_dispatch.median
        << "," << r.nccl_combine.median << "," << r.lsa_dispatch.median << "," << r.lsa_combine.median << ","
        << gbps(r.wire_dispatch_bytes, r.dispatch.median) << "," << gbps(r.logical_dispatch_bytes, r.dispatch.median)
        << "," << gbps(r.wire_combine_bytes, r.combine.median) << "," << gbps(r.logical_combine_bytes, r.combine.median)
        << "," << r.wire_dispatch_bytes / 450e3 << "," << r.wire_combine_bytes / 450e3 << "," << ws << "\n";
  }
}

}  // namespace epgraph::bench
