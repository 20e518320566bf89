#pragma once
// Shared by the epg-bench unit tests (test_bench.cpp: the writer; test_bench_scripts.cpp: the
// scripts that read its files): a temporary folder per test, an RFC 4180 reader, and one known
// report with every column set.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <system_error>
#include <vector>

#include "bench.hpp"

namespace epgraph::bench_test {
namespace fs = std::filesystem;

// A fresh folder per test, removed afterwards (kept when EPG_TEST_KEEP_TMP is set, to look
// at the files).
struct temp_dir {
  fs::path path;
  temp_dir() {
    path = fs::temp_directory_path() / ("epg-bench-test-" + std::to_string(::getpid()) + "-" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~temp_dir() {
    if (std::getenv("EPG_TEST_KEEP_TMP")) return;
    std::error_code ec;
    fs::permissions(path, fs::perms::owner_all, fs::perm_options::add, ec);
    fs::remove_all(path, ec);
  }
};

inline std::string read_text(const fs::path& p) {
  std::ifstream in(p);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// RFC 4180 reader: rows of fields; quoted fields may hold commas and doubled quotes.
inline std::vector<std::vector<std::string>> read_csv(const fs::path& p) {
  const std::string text = read_text(p);
  std::vector<std::vector<std::string>> rows(1, std::vector<std::string>(1));
  bool quoted = false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (quoted) {
      if (c != '"') {
        rows.back().back() += c;
      } else if (i + 1 < text.size() && text[i + 1] == '"') {
        rows.back().back() += '"';
        ++i;
      } else {
        quoted = false;
      }
    } else if (c == '"') {
      quoted = true;
    } else if (c == ',') {
      rows.back().emplace_back();
    } else if (c == '\n') {
      rows.emplace_back(1);
    } else {
      rows.back().back() += c;
    }
  }
  if (rows.back() == std::vector<std::string>(1)) rows.pop_back();  // after the last newline
  return rows;
}

inline bench::result known_result() {
  bench::result r;
  r.gpu = "NVIDIA H200 \"test\", rev 1";  // a comma and quotes: escaped in both files
  r.nccl_version = bench::nccl_version_string(22809);
  r.ep = 4;
  r.domain_size = 2;
  r.tokens = 128;
  r.hidden = 7168;
  r.top_k = 8;
  r.experts = 256;
  r.ctas = 64;
  r.threads = 512;
  r.ops_per_graph = 10;
  r.replays = 200;
  r.deadline_seconds = 30;
  r.remote_ctas = 48;
  r.programmatic = false;
  r.payload = "fp8";
  r.routing = "uniform";
  r.checked = "faults-only";
  r.dispatch_bytes_per_token = 7456;
  r.combine_bytes_per_token = 14336;
  r.wire_dispatch_bytes = 0.1 + 0.2;  // 0.30000000000000004: needs all 17 digits
  r.logical_dispatch_bytes = 1.0 / 3.0;
  r.wire_combine_bytes = 5e6;
  r.logical_combine_bytes = 6.25e6;
  r.model_wire_dispatch_bytes = 2.0 / 3.0;
  r.busiest_dispatch_ingress_bytes = 9e5;
  r.busiest_combine_egress_bytes = 1.8e6;
  r.dispatch = {24.3808, 24.4608, 24.5728};
  r.combine = {22.5184, 22.8032, 23.1296};
  r.nccl_dispatch = {30.1, 30.5024, 30.9};
  r.nccl_combine = {30.0, 30.3776, 30.7};
  r.lsa_dispatch = {20.1, 20.3808, 20.6};
  r.lsa_combine = {19.9, 20.0288, 20.2};
  r.lsa_pull_combine = {21.5, 21.75, 22.0};
  r.slab_dispatch = {40.5, 41.25, 42.0};
  r.slab_combine = {38.0, 39.5, 40.25};
  r.slab_dispatch_bytes = 2.5e6;
  r.slab_combine_bytes = 4.75e6;
  r.expert_slots = 66;
  r.permute = {4.0, 4.5, 5.0};
  r.unpermute = {3.0, 3.25, 3.5};
  r.permute_bytes = 9e6;
  r.unpermute_bytes = 6.5e6;
  r.busiest_permute_bytes = 1.2e7;
  r.busiest_unpermute_bytes = 8e6;
  r.permute_indexed = {1.0, 1.5, 2.0};
  r.permute_indexed_bytes = 3e5;
  r.quantize = {6.0, 6.5, 7.0};
  r.quantize_bytes = 1.3e6;
  r.quantized_dispatch = {25.0, 25.5, 26.0};
  r.quantize_then_dispatch = {30.0, 31.0, 32.0};
  r.fp8_combine = {12.0, 12.5, 13.0};
  r.fp8_prepare = {5.0, 5.5, 6.0};
  r.wire_fp8_combine_bytes = 2.5e6;
  r.fp8_prepare_bytes = 4e6;
  r.workspace = {{"window.counts", 16},
                 {"window.combine", 28672},
                 {"window.padding", 3984},
                 {"local.faults", 64},
                 {"local.padding", 192},
                 {"remote.remote_partials", 8192},
                 {"remote.padding", 0}};
  return r;
}
inline constexpr std::int64_t known_window_bytes = 16 + 28672 + 3984, known_local_bytes = 64 + 192, known_remote_bytes = 8192;

}  // namespace epgraph::bench_test
