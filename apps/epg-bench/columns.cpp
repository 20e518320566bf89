// The CSV and JSON columns of epg-bench, defined once: a CSV column and its JSON key are the same
// name, so a script reads either file the same way.
#include <charconv>
#include <nlohmann/json.hpp>

#include "bench.hpp"

namespace epgraph::bench {
namespace {

template <class T>
cell integer(T v) {
  return static_cast<std::int64_t>(v);
}

// Builds the list group by group; every column of a group shares its doc line.
class column_list {
 public:
  void add(std::string key, std::string doc, std::function<cell(const result&)> value) {
    list_.push_back({std::move(key), std::move(doc), std::move(value)});
  }
  // median, p10 and p90 of one timed op.
  void add_times(const std::string& op, const std::string& what, stats result::*times) {
    const std::string doc = what + ": median, p10, p90 microseconds per op (slowest rank)";
    add(op + "_us", doc, [times](const result& r) { return (r.*times).median; });
    add(op + "_p10_us", doc, [times](const result& r) { return (r.*times).p10; });
    add(op + "_p90_us", doc, [times](const result& r) { return (r.*times).p90; });
  }
  // A collective op: its times, plus its wire GB/s (listed later, by add_wire_bandwidths).
  void add_timed(const std::string& op, const std::string& what, stats result::*times, double result::*wire_bytes) {
    add_times(op, what, times);
    wire_.push_back({"wire_" + op + "_GBps", what + ": wire (remote) bytes / median time, GB/s",
                     [times, wire_bytes](const result& r) { return gbps(r.*wire_bytes, (r.*times).median); }});
  }
  // A local op: its times and the GPU-memory bytes it reads and writes once / median, GB/s.
  void add_local(const std::string& op, const std::string& what, stats result::*times, double result::*bytes) {
    add_times(op, what, times);
    add(op + "_bytes", what + ": GPU-memory bytes it must read and write once per rank (mean over ranks)",
        [bytes](const result& r) { return r.*bytes; });
    add(op + "_GBps", what + ": those bytes / median time, GB/s (compare with the card's memory bandwidth)",
        [times, bytes](const result& r) { return gbps(r.*bytes, (r.*times).median); });
  }
  // The wire GB/s of every op added so far, after all their times.
  void add_wire_bandwidths() {
    list_.insert(list_.end(), wire_.begin(), wire_.end());
    wire_.clear();
  }
  std::vector<column> take() { return std::move(list_); }

 private:
  std::vector<column> list_, wire_;
};

std::vector<column> make_columns() {
  column_list c;
  c.add("gpu", "card name (cudaGetDeviceProperties)", [](const result& r) { return r.gpu; });
  c.add("nccl_version", "loaded NCCL library (ncclGetVersion)", [](const result& r) { return r.nccl_version; });
  c.add("ep", "ranks (GPUs) in the EP group", [](const result& r) { return integer(r.ep); });
  c.add("domain_size", "ranks per NVLink domain (the others are reached by NCCL send/recv of fixed slabs)",
        [](const result& r) { return integer(r.domain_size); });
  c.add("tokens", "tokens per rank", [](const result& r) { return integer(r.tokens); });
  c.add("hidden", "hidden size", [](const result& r) { return integer(r.hidden); });
  c.add("top_k", "experts per token", [](const result& r) { return integer(r.top_k); });
  c.add("experts", "number of experts", [](const result& r) { return integer(r.experts); });
  c.add("payload", "dispatch payload: bf16, or fp8 (e4m3 + 1x128 fp32 scales)",
        [](const result& r) { return r.payload; });
  c.add("routing", "routing distribution", [](const result& r) { return r.routing; });
  c.add("expert_slots", "expert slots per rank of a placement table (--placement-table); 0 = the contiguous rule",
        [](const result& r) { return integer(r.expert_slots); });
  c.add("ctas", "CTAs per dispatch/combine launch (and the LSA baseline)",
        [](const result& r) { return integer(r.ctas); });
  c.add("threads", "threads per CTA", [](const result& r) { return integer(r.threads); });
  c.add("ops_per_graph", "back-to-back ops per timed graph", [](const result& r) { return integer(r.ops_per_graph); });
  c.add("replays", "timed graph replays", [](const result& r) { return integer(r.replays); });
  c.add("deadline_s", "the sessions' deadline_seconds (--deadline; 0 = off: no device deadline, no exchange guard)",
        [](const result& r) -> cell { return r.deadline_seconds; });
  c.add("remote_ctas", "several domains: CTAs of each NCCL exchange between domains (--remote-ctas; 0 = NCCL's choice)",
        [](const result& r) { return integer(r.remote_ctas); });
  c.add("programmatic", "1: the sessions' kernels use programmatic dependent launch (the default); 0: plain launches "
        "(--plain-launch). The NCCL and LSA baselines always launch plainly",
        [](const result& r) { return integer(r.programmatic ? 1 : 0); });
  c.add("checked",
        "what the run verified: faults-only = check_faults() passed after the timings (no out-of-step, deadline "
        "or bad-id fault); the output data are not compared (epg-demo does that)",
        [](const result& r) { return r.checked; });
  c.add_timed("dispatch", "epgraph dispatch", &result::dispatch, &result::wire_dispatch_bytes);
  c.add_timed("combine", "epgraph combine", &result::combine, &result::wire_combine_bytes);
  c.add_timed("nccl_dispatch", "NCCL grouped send/recv of dispatch's bytes", &result::nccl_dispatch,
              &result::wire_dispatch_bytes);
  c.add_timed("nccl_combine", "NCCL grouped send/recv of combine's bytes", &result::nccl_combine,
              &result::wire_combine_bytes);
  c.add_timed("lsa_dispatch", "raw LSA copy + barrier of dispatch's bytes", &result::lsa_dispatch,
              &result::wire_dispatch_bytes);
  c.add_timed("lsa_combine", "raw LSA copy + barrier of combine's bytes", &result::lsa_combine,
              &result::wire_combine_bytes);
  c.add_timed("lsa_pull_combine",
              "raw LSA pull of combine's bytes after one barrier (combine's barrier and loads without its routing "
              "and sums)",
              &result::lsa_pull_combine, &result::wire_combine_bytes);
  c.add_timed("slab_dispatch",
              "several domains: NCCL grouped send/recv of the fixed slabs dispatch's exchange moves (max_tokens "
              "rows of ids and payloads to and from each rank of another domain), alone; 0 with one domain",
              &result::slab_dispatch, &result::slab_dispatch_bytes);
  c.add_timed("slab_combine",
              "several domains: NCCL grouped send/recv of the fixed slabs combine's exchange moves (max_tokens "
              "bf16 rows to and from each rank of another domain), alone; 0 with one domain",
              &result::slab_combine, &result::slab_combine_bytes);
  c.add_wire_bandwidths();
  const std::string logical = "logical bytes (all received, own tokens included) / median time, GB/s";
  c.add("logical_dispatch_GBps", logical,
        [](const result& r) { return gbps(r.logical_dispatch_bytes, r.dispatch.median); });
  c.add("logical_combine_GBps", logical,
        [](const result& r) { return gbps(r.logical_combine_bytes, r.combine.median); });
  const std::string per_token =
      "bytes per token and destination rank (dispatch: payload rows + top-k ids; combine: bf16 row)";
  c.add("dispatch_bytes_per_token", per_token, [](const result& r) { return r.dispatch_bytes_per_token; });
  c.add("combine_bytes_per_token", per_token, [](const result& r) { return r.combine_bytes_per_token; });
  const std::string bytes =
      "bytes per rank and op (mean over ranks): wire = sent to other ranks, logical = received, own tokens "
      "included; the baselines move the same bytes";
  c.add("wire_dispatch_bytes", bytes, [](const result& r) { return r.wire_dispatch_bytes; });
  c.add("logical_dispatch_bytes", bytes, [](const result& r) { return r.logical_dispatch_bytes; });
  c.add("wire_combine_bytes", bytes, [](const result& r) { return r.wire_combine_bytes; });
  c.add("logical_combine_bytes", bytes, [](const result& r) { return r.logical_combine_bytes; });
  const std::string slab = "several domains: slab bytes per rank and op sent to other domains (0 with one domain)";
  c.add("slab_dispatch_bytes", slab, [](const result& r) { return r.slab_dispatch_bytes; });
  c.add("slab_combine_bytes", slab, [](const result& r) { return r.slab_combine_bytes; });
  c.add("model_wire_dispatch_bytes", "traffic model's wire bytes: T * U * (N-1)/N * dispatch_bytes_per_token",
        [](const result& r) { return r.model_wire_dispatch_bytes; });
  const std::string floor = "wire bytes at NVLink4's 450 GB/s line rate, microseconds";
  c.add("floor_dispatch_us", floor, [](const result& r) { return r.wire_dispatch_bytes / 450e3; });
  c.add("floor_combine_us", floor, [](const result& r) { return r.wire_combine_bytes / 450e3; });
  const std::string busiest =
      "the busiest rank's bytes (max over ranks): dispatch rows it receives from the others, combine rows the "
      "others pull from it; under skew its links bound every all-to-all";
  c.add("busiest_dispatch_ingress_bytes", busiest, [](const result& r) { return r.busiest_dispatch_ingress_bytes; });
  c.add("busiest_combine_egress_bytes", busiest, [](const result& r) { return r.busiest_combine_egress_bytes; });
  const std::string busiest_floor = "the busiest rank's bytes at NVLink4's 450 GB/s line rate, microseconds";
  c.add("busiest_floor_dispatch_us", busiest_floor,
        [](const result& r) { return r.busiest_dispatch_ingress_bytes / 450e3; });
  c.add("busiest_floor_combine_us", busiest_floor,
        [](const result& r) { return r.busiest_combine_egress_bytes / 450e3; });
  c.add_local("permute",
              "expert-major permute (packed, rows keep their weights): counts, scan (CUB's; small layouts: in "
              "placement), placement, copy of every received payload row to each of its local experts' rows",
              &result::permute, &result::permute_bytes);
  c.add_local("permute_indexed",
              "the same permute with the rows left in the receive buffers (expert_major_spec::copy_rows = false, "
              "for GEMMs that gather rows by index): counts, scan (CUB's; small layouts: in placement), placement, "
              "each row's origin, weight and receive index",
              &result::permute_indexed, &result::permute_indexed_bytes);
  c.add_local("unpermute",
              "weighted un-permute: each received token's expert rows, times their weights, summed into the "
              "combine region",
              &result::unpermute, &result::unpermute_bytes);
  const std::string busiest_bytes =
      "the busiest rank's GPU-memory bytes of the op (max over ranks; counted as permute_bytes, unpermute_bytes)";
  const std::string busiest_rate =
      "those bytes / median time (the slowest rank's), GB/s: under skew at least the rate the hot rank reaches "
      "(exact when the busiest rank is the slowest)";
  c.add("busiest_permute_bytes", busiest_bytes, [](const result& r) { return r.busiest_permute_bytes; });
  c.add("busiest_permute_GBps", busiest_rate,
        [](const result& r) { return gbps(r.busiest_permute_bytes, r.permute.median); });
  c.add("busiest_unpermute_bytes", busiest_bytes, [](const result& r) { return r.busiest_unpermute_bytes; });
  c.add("busiest_unpermute_GBps", busiest_rate,
        [](const result& r) { return gbps(r.busiest_unpermute_bytes, r.unpermute.median); });
  c.add_local("quantize", "fp8 rows (--quantize fp8, H % 8 == 0; else 0): quantize_rows_op alone, bf16 rows into e4m3 codes "
              "and 1x128 fp32 scales", &result::quantize, &result::quantize_bytes);
  c.add_timed("quantized_dispatch", "fp8 rows (--quantize fp8, H % 8 == 0; else 0): the quantizing dispatch, bf16 rows in",
              &result::quantized_dispatch, &result::wire_dispatch_bytes);
  c.add_timed("quantize_then_dispatch", "fp8 rows (--quantize fp8, H % 8 == 0; else 0): quantize_rows_op, then the fp8 dispatch",
              &result::quantize_then_dispatch, &result::wire_dispatch_bytes);
  c.add_timed("fp8_combine", "--combine-precision fp8 (H % 16 == 0; else 0): the FP8 combine, e4m3 rows + 1x128 "
              "fp32 scales pulled", &result::fp8_combine, &result::wire_fp8_combine_bytes);
  c.add_wire_bandwidths();
  c.add_local("fp8_prepare", "--combine-precision fp8 (else 0): the quantizing prepare-combine alone, bf16 expert "
              "rows into FP8 rows of the combine region", &result::fp8_prepare, &result::fp8_prepare_bytes);
  c.add("wire_fp8_combine_bytes", "--combine-precision fp8: the FP8 combine's wire bytes per rank (mean)",
        [](const result& r) { return r.wire_fp8_combine_bytes; });
  const std::string workspace = "session GPU memory per rank: total = window (symmetric) + local state + remote state (several domains)";
  c.add("workspace_bytes", workspace, [](const result& r) { return integer(workspace_bytes(r)); });
  c.add("workspace_window_bytes", workspace, [](const result& r) { return integer(workspace_bytes(r, "window.")); });
  c.add("workspace_local_bytes", workspace, [](const result& r) { return integer(workspace_bytes(r, "local.")); });
  c.add("workspace_remote_bytes", workspace, [](const result& r) { return integer(workspace_bytes(r, "remote.")); });
  return c.take();
}

// Shortest text that reads back as the same double (std::to_chars round-trips).
std::string number_text(double v) {
  char text[64];
  const auto end = std::to_chars(text, text + sizeof text, v).ptr;
  return std::string(text, end);
}

// RFC 4180: quote a field holding a comma, quote or line break; double its quotes.
std::string csv_field(const cell& c) {
  if (const auto* i = std::get_if<std::int64_t>(&c)) return std::to_string(*i);
  if (const auto* d = std::get_if<double>(&c)) return number_text(*d);
  const std::string& s = std::get<std::string>(c);
  if (s.find_first_of(",\"\r\n") == std::string::npos) return s;
  std::string quoted = "\"";
  for (char ch : s) quoted += ch == '"' ? std::string("\"\"") : std::string(1, ch);
  return quoted + "\"";
}

// Breaks text at spaces into lines of at most `width` characters; later lines get `indent`.
std::string wrap(const std::string& text, std::size_t width, const std::string& indent) {
  std::string out, line;
  std::size_t start = 0;
  while (start < text.size()) {
    std::size_t end = text.find(' ', start + 1);
    if (end == std::string::npos) end = text.size();
    const std::string word = text.substr(start, end - start);  // with its leading space
    if (!line.empty() && line.size() + word.size() > width) {
      out += line + "\n";
      line = indent + word.substr(word.front() == ' ' ? 1 : 0);
    } else {
      line += word;
    }
    start = end;
  }
  return out + line + "\n";
}

}  // namespace

const std::vector<column>& columns() {
  static const std::vector<column> list = make_columns();
  return list;
}

std::string columns_legend() {
  std::string out =
      "CSV columns and JSON keys (the same names; the JSON adds workspace_parts, the bytes of every\n"
      "workspace region and its padding, which add up to workspace_bytes):\n";
  // One line per group: the keys that share a doc, then the doc.
  for (std::size_t i = 0; i < columns().size();) {
    std::string keys;
    std::size_t j = i;
    for (; j < columns().size() && columns()[j].doc == columns()[i].doc; ++j) {
      if (j > i) keys += ", ";
      keys += columns()[j].key;
    }
    out += wrap("  " + keys + ": " + columns()[i].doc, 100, "      ");
    i = j;
  }
  return out;
}

std::string csv_header() {
  std::string line;
  for (const auto& c : columns()) {
    if (!line.empty()) line += ',';
    line += c.key;
  }
  return line + "\n";
}

std::string csv_row(const result& r) {
  std::string line;
  for (std::size_t i = 0; i < columns().size(); ++i) {
    if (i) line += ',';  // not line.empty(): a first field may be empty
    line += csv_field(columns()[i].value(r));
  }
  return line + "\n";
}

std::string json_text(const std::vector<result>& results) {
  auto doc = nlohmann::ordered_json::array();
  for (const result& r : results) {
    nlohmann::ordered_json row;
    for (const auto& c : columns()) std::visit([&](const auto& v) { row[c.key] = v; }, c.value(r));
    auto& parts = row["workspace_parts"] = nlohmann::ordered_json::object();
    for (const auto& part : r.workspace) parts[part.name] = part.bytes;
    doc.push_back(std::move(row));
  }
  return doc.dump(1) + "\n";
}

}  // namespace epgraph::bench
