#pragma once
// epg-bench: options, one measured configuration, the table, and the result files.
#include <cstdint>
#include <cstdio>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "epgraph/comm/workspace_layout.hpp"
#include "epgraph/kernels/expert_major.hpp"
#include "epgraph/sim/problem.hpp"

namespace epgraph::bench {

/// One problem shape of a sweep; each gets its own session and its own routing draw.
struct shape {
  int hidden = 7168, top_k = 8, experts = 256;
  sim::routing dist = sim::routing::uniform;
  int domain_size = 0;  ///< ranks per NVLink domain (0 = the NVLink team NCCL finds)
  int ctas = 64;        ///< CTAs per dispatch/combine launch (and the LSA baseline): the SM budget
  bool operator==(const shape&) const = default;
};

struct options {
  // Swept (comma-separated on the command line): every combination is measured.
  std::vector<int> tokens{1, 128, 512, 4096};
  std::vector<std::string> payloads{"bf16", "fp8"};  ///< fp8 = e4m3 bytes + 1x128 fp32 scales
  std::vector<int> hidden{7168}, top_k{8}, experts{256};
  std::vector<sim::routing> routings{sim::routing::uniform, sim::routing::skewed};  // skew always reported
  std::vector<int> domain_sizes{0};  ///< ranks per NVLink domain; 0 = the NVLink team NCCL finds
  std::vector<int> ctas{64};         ///< CTAs per launch: the SM budget (issue 16 sweeps 8 .. 64)
  // Fixed for the whole run.
  int replays = 200, warmup = 20, threads = 512;
  int ops_per_graph = 10;  ///< back-to-back ops in each timed graph (time is per op)
  std::uint64_t seed = 1;
  /// ep_config::deadline_seconds of every session (0 = off: no device deadline, and with
  /// several domains no exchange guard), so their cost can be measured.
  double deadline_seconds = 30.0;
  int remote_ctas = comm::ep_config{}.remote_ctas;  ///< of every session (several domains; 0 = NCCL's choice)
  bool placement_table = false;  ///< sessions keep a placement table (ep_config::expert_slots_per_rank)
  bool plain_launch = false;     ///< sessions launch plainly (ep_config::programmatic_launch off)
  /// fp8 rows also time the quantizing dispatch (bf16 rows in) and a separate quantize_rows_op
  /// followed by the fp8 dispatch (issue 15); --quantize none skips them.
  bool quantize = true;
  /// Every row also times the FP8 combine (combine_precision::fp8) and its quantizing
  /// prepare-combine, beside the exact one (--combine-precision bf16 skips them).
  bool fp8_combine = true;
  bool trace = false;  ///< every rank prints each phase of each configuration to stderr
  std::string out = "epg-bench";  ///< writes <out>.csv (row by row) and <out>.json (at the end)
};
std::optional<options> parse_options(const std::vector<std::string>& args, std::string* help = nullptr);

/// Every combination of the swept shape parameters, the CTA count varying fastest, then domain
/// size, routing, experts, top-k and hidden. Pure.
std::vector<shape> sweep_shapes(const options& o);

/// The problem and session config of one measurement (fp8: e4m3 bytes + 1x128 fp32 scales).
sim::problem make_problem(const shape& s, int ep_size, int tokens, std::uint64_t seed);
comm::ep_config make_config(const sim::problem& p, const std::string& payload, int ctas, int threads);
/// The session config of one measurement with the run's fixed options (deadline, remote_ctas,
/// placement table) applied: what every session of the run and check_sweep use. Pure.
comm::ep_config session_config(const options& o, const shape& s, int ep_size, int tokens, const std::string& payload);

/// Hidden-state-like bf16 rows [tokens][hidden] for the quantizing timings: values spread over
/// a few units with an outlier now and then (no NaN or Inf), drawn from `seed`. Pure.
std::vector<std::uint16_t> bf16_rows(int tokens, int hidden, std::uint64_t seed);

/// The permute the bench times beside dispatch and combine: packed, rows keep their router
/// weights (the payload named "weights").
kernels::permute_args timed_permute(const comm::ep_config& config);

/// Checks every swept configuration against `ep_size` ranks before anything runs, so a sweep
/// never dies halfway: throws a config error naming the shape and the failing field.
void check_sweep(const options& o, int ep_size);

struct stats {
  double p10 = 0, median = 0, p90 = 0;  ///< microseconds, slowest rank
};

/// One slice of a session's GPU memory, named "window.<region>" (symmetric window) or
/// "local.<region>" (local state); the padding between regions is a part too, so the parts add up
/// to the bytes the session allocates.
struct workspace_part {
  std::string name;
  std::size_t bytes = 0;
  bool operator==(const workspace_part&) const = default;
};
std::vector<workspace_part> workspace_parts(const comm::workspace_layout& layout, const comm::ep_config& config);

struct result {
  int ep = 0, domain_size = 0, tokens = 0, hidden = 0, top_k = 0, experts = 0;
  int ctas = 0, threads = 0, ops_per_graph = 0, replays = 0;
  int expert_slots = 0;  ///< ep_config::expert_slots_per_rank (0 = the contiguous rule, no table)
  double deadline_seconds = 0;  ///< the sessions' deadline (0 = off, and no exchange guard)
  int remote_ctas = 0;          ///< the sessions' remote_ctas (0 = NCCL's choice)
  bool programmatic = true;     ///< the sessions' programmatic_launch
  std::string payload, routing, gpu, nccl_version;
  /// What the run verified; "faults-only": check_faults() passed after the timings (no out-of-step,
  /// deadline or bad-id fault), the output data were not compared.
  std::string checked;
  double dispatch_bytes_per_token = 0, combine_bytes_per_token = 0;
  double wire_dispatch_bytes = 0, logical_dispatch_bytes = 0;  ///< per rank (mean)
  double wire_combine_bytes = 0, logical_combine_bytes = 0;
  stats dispatch, combine, nccl_dispatch, nccl_combine, lsa_dispatch, lsa_combine;
  /// The raw LSA pull of combine's bytes after one barrier (baselines.hpp, (c)).
  stats lsa_pull_combine;
  /// Several domains: NCCL send/recv of the slabs the exchanges move between domains, alone
  /// (0 with one domain), and those slabs' bytes per rank (sent to other domains).
  stats slab_dispatch, slab_combine;
  double slab_dispatch_bytes = 0, slab_combine_bytes = 0;
  double model_wire_dispatch_bytes = 0;  ///< traffic model: T * U * (N-1)/N * bytes_per_token
  /// Dispatch bytes the busiest rank receives from the others (max over ranks): under skew the
  /// hot rank's incoming NVLink bounds every all-to-all (its combine rows leave it the same way).
  double busiest_dispatch_ingress_bytes = 0, busiest_combine_egress_bytes = 0;
  /// The expert-major permute (packed) and the weighted un-permute, alone, on this routing, and
  /// the GPU-memory bytes each must read and write once per rank (mean over ranks); the same
  /// permute with the rows left in the receive buffers (copy_rows = false: indices only).
  stats permute, unpermute, permute_indexed;
  double permute_bytes = 0, unpermute_bytes = 0, permute_indexed_bytes = 0;
  /// The same bytes on the busiest rank (max over ranks). The times are the slowest rank's, so
  /// under skew these, not the means, say how near the memory's bandwidth that rank runs (a
  /// lower bound where the busiest rank is not the slowest).
  double busiest_permute_bytes = 0, busiest_unpermute_bytes = 0;
  /// fp8 payload with options::quantize: quantize_rows_op alone (and the bytes it reads and
  /// writes), the quantizing dispatch, and quantize_rows_op + the fp8 dispatch as one op.
  stats quantize, quantized_dispatch, quantize_then_dispatch;
  double quantize_bytes = 0;
  /// options::fp8_combine (H % 16 == 0): the FP8 combine, its wire bytes per rank (e4m3 rows
  /// and their scales), and the quantizing prepare-combine alone with the bytes it moves.
  stats fp8_combine, fp8_prepare;
  double wire_fp8_combine_bytes = 0, fp8_prepare_bytes = 0;
  /// Bytes per GPU, every part once (no totals).
  std::vector<workspace_part> workspace;
};

/// Sum of the workspace parts whose name starts with `prefix` ("" = all, "window.", "local.").
std::size_t workspace_bytes(const result& r, std::string_view prefix = "");

/// GB/s for bytes moved in microseconds.
inline double gbps(double bytes, double us) { return us > 0 ? bytes / (us * 1e3) : 0; }
/// Expected distinct destination ranks per token (uniform top-k without replacement).
double expected_destinations(int ranks, int experts, int top_k);
/// NCCL's version code (22809) as "2.28.9".
std::string nccl_version_string(int code);

// The stdout table.
void print_header();
/// One table row, prefixed with "done/total" and the time since the sweep started.
void print_row(const result& r, std::size_t done, std::size_t total, double elapsed_seconds);
/// What every column of the table means (shown by --help).
std::string table_legend();

// CSV and JSON: one list of columns, so a CSV column and its JSON key have the same name.
using cell = std::variant<std::int64_t, double, std::string>;
struct column {
  std::string key;
  std::string doc;  ///< shared by the columns of a group (median, p10, p90 of one op)
  std::function<cell(const result&)> value;
};
const std::vector<column>& columns();
std::string columns_legend();  ///< the columns, grouped, for --help
std::string csv_header();
std::string csv_row(const result& r);  ///< with the trailing newline
/// The JSON document: an array of objects with every column's key, plus "workspace_parts".
std::string json_text(const std::vector<result>& results);

/// A file that could not be created, written or renamed: what() names the path, the step and
/// the OS error.
struct output_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// The result files of one run, <prefix>.csv and <prefix>.json. The constructor creates the parent
/// folder and the CSV (header written and flushed) and checks that the JSON can be created
/// (removing an earlier run's JSON, which would pass for this run's), so an unusable --out fails
/// before the sweep. add() appends one CSV row and flushes it, so an aborted sweep keeps every
/// finished row; finish() writes the JSON complete to <prefix>.json.tmp and renames it, so no
/// partial JSON ever appears. Throws output_error.
class report_files {
 public:
  explicit report_files(const std::string& prefix);
  ~report_files();
  report_files(const report_files&) = delete;
  report_files& operator=(const report_files&) = delete;

  void add(const result& r);
  void finish();
  const std::string& csv_path() const { return csv_path_; }
  const std::string& json_path() const { return json_path_; }

 private:
  std::string csv_path_, json_path_;
  std::FILE* csv_ = nullptr;
  std::vector<result> results_;
};

}  // namespace epgraph::bench
