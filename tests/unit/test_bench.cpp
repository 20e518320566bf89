#include <gtest/gtest.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "baselines.hpp"
#include "bench.hpp"
#include "bench_test_files.hpp"
#include "epgraph/comm/error.hpp"

using namespace epgraph;
using namespace epgraph::bench_test;

TEST(BenchOptions, DefaultsSweepTheReferenceShapes) {
  auto o = bench::parse_options({});
  ASSERT_TRUE(o);
  EXPECT_EQ(o->tokens, (std::vector<int>{1, 128, 512, 4096}));
  EXPECT_EQ(o->payloads, (std::vector<std::string>{"bf16", "fp8"}));
  EXPECT_EQ(o->ops_per_graph, 10);
  EXPECT_FALSE(o->placement_table);
  EXPECT_TRUE(bench::parse_options({"--placement-table"})->placement_table);
  EXPECT_TRUE(o->quantize);  // fp8 rows time the quantizing dispatch too
  EXPECT_FALSE(bench::parse_options({"--quantize", "none"})->quantize);
  EXPECT_TRUE(o->fp8_combine);
  EXPECT_FALSE(bench::parse_options({"--combine-precision", "exact"})->fp8_combine);
  // The reference H=7168, top-8 of 256 experts, by default under uniform and skewed routing
  // (the standard run always reports skew, issue 16).
  EXPECT_EQ(bench::sweep_shapes(*o), (std::vector<bench::shape>{{7168, 8, 256, sim::routing::uniform},
                                                                 {7168, 8, 256, sim::routing::skewed}}));
  EXPECT_EQ(bench::sweep_shapes(*bench::parse_options({"--routing", "uniform"})).size(), 1u);
}

TEST(BenchOptions, ParsesListsAndRejectsBadOnes) {
  auto o = bench::parse_options({"--tokens", "64,2048", "--payload", "fp8", "--ctas", "128", "--out", "x/y"});
  ASSERT_TRUE(o);
  EXPECT_EQ(o->tokens, (std::vector<int>{64, 2048}));
  EXPECT_EQ(o->payloads, (std::vector<std::string>{"fp8"}));
  EXPECT_EQ(o->ctas, std::vector<int>{128});
  EXPECT_EQ(o->out, "x/y");
  EXPECT_THROW(bench::parse_options({"--tokens", "12,abc"}), comm::error);
  EXPECT_THROW(bench::parse_options({"--tokens", "0"}), comm::error);
  EXPECT_THROW(bench::parse_options({"--payload", "nvfp4"}), comm::error);
  EXPECT_THROW(bench::parse_options({"--quantize", "int8"}), comm::error);
  EXPECT_THROW(bench::parse_options({"--combine-precision", "fp4"}), comm::error);
  EXPECT_THROW(bench::parse_options({"--combine-precision", "bf16"}), comm::error);  // was "exact"; now a precision of its own
  EXPECT_THROW(bench::parse_options({"--ops-per-graph", "0"}), comm::error);
  EXPECT_THROW(bench::parse_options({"--hidden", "7168,2880x"}), comm::error);
  EXPECT_THROW(bench::parse_options({"--top-k", "8,-1"}), comm::error);
  EXPECT_THROW(bench::parse_options({"--routing", "uniform,zipf"}), comm::error);
}

TEST(BenchSweep, EveryCombinationOnceRoutingFastest) {
  auto o = bench::parse_options({"--hidden", "7168,2880", "--top-k", "8", "--experts", "256,64", "--routing",
                                 "uniform,skewed"});
  ASSERT_TRUE(o);
  const auto shapes = bench::sweep_shapes(*o);
  ASSERT_EQ(shapes.size(), 8u);
  EXPECT_EQ(shapes[0], (bench::shape{7168, 8, 256, sim::routing::uniform}));
  EXPECT_EQ(shapes[1], (bench::shape{7168, 8, 256, sim::routing::skewed}));
  EXPECT_EQ(shapes[2], (bench::shape{7168, 8, 64, sim::routing::uniform}));
  EXPECT_EQ(shapes[7], (bench::shape{2880, 8, 64, sim::routing::skewed}));
  for (std::size_t i = 0; i < shapes.size(); ++i)
    for (std::size_t j = i + 1; j < shapes.size(); ++j) EXPECT_FALSE(shapes[i] == shapes[j]) << i << " " << j;
}

TEST(BenchSweep, CtaCountsVaryFastestAndReachTheSessionConfig) {
  auto o = bench::parse_options({"--ctas", "8,16,24,32,64", "--domain-size", "2,1", "--routing", "uniform"});
  ASSERT_TRUE(o);
  const auto shapes = bench::sweep_shapes(*o);
  ASSERT_EQ(shapes.size(), 10u);
  EXPECT_EQ(shapes[0], (bench::shape{7168, 8, 256, sim::routing::uniform, 2, 8}));
  EXPECT_EQ(shapes[4], (bench::shape{7168, 8, 256, sim::routing::uniform, 2, 64}));
  EXPECT_EQ(shapes[5], (bench::shape{7168, 8, 256, sim::routing::uniform, 1, 8}));
  EXPECT_EQ(bench::make_config(bench::make_problem(shapes[1], 4, 128, 1), "bf16", shapes[1].ctas, 512).num_ctas, 16);
  EXPECT_THROW(bench::parse_options({"--ctas", "16,0"}), comm::error);
  // check_sweep names the CTA count of the configuration it rejects (more CTAs than allowed).
  auto big = bench::parse_options({"--ctas", "64,5000"});
  ASSERT_TRUE(big);
  try {
    bench::check_sweep(*big, 2);
    ADD_FAILURE() << "accepted 5000 CTAs";
  } catch (const comm::error& e) {
    EXPECT_NE(std::string(e.what()).find("5000 CTAs"), std::string::npos) << e.what();
  }
}

TEST(BenchSweep, DomainSizesVaryFastestAndReachTheSessionConfig) {
  auto o = bench::parse_options({"--domain-size", "4,2,1", "--routing", "uniform,skewed"});
  ASSERT_TRUE(o);
  const auto shapes = bench::sweep_shapes(*o);
  ASSERT_EQ(shapes.size(), 6u);
  EXPECT_EQ(shapes[0], (bench::shape{7168, 8, 256, sim::routing::uniform, 4}));
  EXPECT_EQ(shapes[1], (bench::shape{7168, 8, 256, sim::routing::uniform, 2}));
  EXPECT_EQ(shapes[5], (bench::shape{7168, 8, 256, sim::routing::skewed, 1}));
  const auto cfg = bench::make_config(bench::make_problem(shapes[1], 4, 128, 1), "bf16", 64, 512);
  EXPECT_EQ(cfg.domain_size, 2);
  EXPECT_EQ(cfg.remote_ranks(), 2);
  EXPECT_THROW(bench::parse_options({"--domain-size", "-1"}), comm::error);
  // A domain size that does not divide the ranks is caught before the sweep starts.
  o = bench::parse_options({"--domain-size", "3"});
  ASSERT_TRUE(o);
  try {
    bench::check_sweep(*o, 4);
    FAIL() << "domain size 3 accepted on 4 ranks";
  } catch (const comm::error& e) {
    EXPECT_EQ(e.call(), "domain_size");
    EXPECT_NE(std::string(e.what()).find("domain size 3"), std::string::npos) << e.what();
  }
}

// The run's fixed options reach every session (and the sweep check) through one function.
TEST(BenchSweep, SessionConfigCarriesTheFixedOptions) {
  auto o = bench::parse_options(
      {"--remote-ctas", "17", "--deadline", "5", "--placement-table", "--threads", "256", "--plain-launch"});
  ASSERT_TRUE(o);
  const bench::shape s{7168, 8, 256, sim::routing::uniform, 2, 32};
  const auto cfg = bench::session_config(*o, s, 4, 128, "bf16");
  EXPECT_EQ(cfg.remote_ctas, 17);
  EXPECT_EQ(cfg.deadline_seconds, 5.0);
  EXPECT_EQ(cfg.expert_slots_per_rank, cfg.experts_per_rank());
  EXPECT_EQ(cfg.domain_size, 2);
  EXPECT_EQ(cfg.num_ctas, 32);
  EXPECT_EQ(cfg.threads_per_cta, 256);
  EXPECT_EQ(cfg.max_tokens_per_rank, 128);
  EXPECT_FALSE(cfg.programmatic_launch);
  EXPECT_EQ(bench::session_config(*bench::parse_options({}), s, 4, 128, "bf16").remote_ctas, 0);
  EXPECT_TRUE(bench::session_config(*bench::parse_options({}), s, 4, 128, "bf16").programmatic_launch);
  for (const char* bad : {"-1", "65"}) {
    try {
      (void)bench::parse_options({"--remote-ctas", bad});
      FAIL() << bad << " accepted";
    } catch (const comm::error& e) {
      EXPECT_EQ(e.call(), "--remote-ctas");
      EXPECT_NE(std::string(e.what()).find(std::string("is ") + bad), std::string::npos) << e.what();
    }
  }
}

TEST(BenchSweep, ConfigOfOneMeasurement) {
  const bench::shape s{7168, 8, 256, sim::routing::uniform};
  const auto p = bench::make_problem(s, 4, 128, 1);
  EXPECT_EQ(p.max_tokens, 128);
  EXPECT_EQ(p.min_tokens, 128);  // the measured batch is exactly T tokens
  const auto bf16 = bench::make_config(p, "bf16", 64, 512);
  ASSERT_EQ(bf16.payloads.size(), 2u);
  EXPECT_EQ(bf16.payloads[0].row_bytes, 7168u * 2);
  const auto fp8 = bench::make_config(p, "fp8", 64, 512);
  ASSERT_EQ(fp8.payloads.size(), 3u);
  EXPECT_EQ(fp8.payloads[0].row_bytes, 7168u);     // e4m3
  EXPECT_EQ(fp8.payloads[1].row_bytes, 56u * 4);   // one fp32 scale per 128 elements
  EXPECT_EQ(fp8.payloads[2].row_bytes, 8u * 4);    // top-k weights
  EXPECT_EQ(fp8.num_ctas, 64);
}

TEST(BenchSweep, InvalidShapeIsRejectedBeforeAnythingRuns) {
  auto o = bench::parse_options({"--top-k", "4", "--experts", "256,6"});
  ASSERT_TRUE(o);
  EXPECT_NO_THROW(bench::check_sweep(*o, 2));
  try {
    bench::check_sweep(*o, 4);  // 6 experts do not split over 4 ranks
    FAIL() << "a sweep with 6 experts on 4 ranks was accepted";
  } catch (const comm::error& e) {
    const std::string text = e.what();
    EXPECT_EQ(e.call(), "num_experts");
    EXPECT_NE(text.find("experts 6"), std::string::npos) << text;
    EXPECT_NE(text.find("on 4 ranks it is 6"), std::string::npos) << text;
  }
}

TEST(BenchModel, ExpectedDestinationsMatchTheTrafficModelTable) {
  // moe-a2a-background.md: E=256, k=8 -> U = 1.99 (N=2), 3.61 (N=4), 5.30 (N=8), to about
  // two decimals (the exact N=8 value is 5.2947).
  EXPECT_NEAR(bench::expected_destinations(2, 256, 8), 1.99, 0.01);
  EXPECT_NEAR(bench::expected_destinations(4, 256, 8), 3.61, 0.01);
  EXPECT_NEAR(bench::expected_destinations(8, 256, 8), 5.30, 0.01);
  // N=2: 2 * (1 - C(128,8)/C(256,8)) exactly.
  double ratio = 1;
  for (int i = 0; i < 8; ++i) ratio *= (128.0 - i) / (256.0 - i);
  EXPECT_DOUBLE_EQ(bench::expected_destinations(2, 256, 8), 2 * (1 - ratio));
  EXPECT_DOUBLE_EQ(bench::expected_destinations(1, 256, 8), 1.0);
}

TEST(BenchModel, BandwidthIsBytesOverMicroseconds) {
  EXPECT_DOUBLE_EQ(bench::gbps(450e3, 1.0), 450.0);  // 450 kB in 1 us = 450 GB/s
  EXPECT_DOUBLE_EQ(bench::gbps(1e6, 0.0), 0.0);
}

// ---- Result files: the CSV and the JSON of a known report, read back exactly. ----

namespace {
// Every column of known_result() (bench_test_files.hpp), written out by hand (not through columns()).
std::map<std::string, std::string> expected_strings() {
  return {{"gpu", "NVIDIA H200 \"test\", rev 1"},
          {"nccl_version", "2.28.9"},
          {"payload", "fp8"},
          {"routing", "uniform"},
          {"checked", "faults-only"}};
}
std::map<std::string, double> expected_numbers() {
  return {{"ep", 4},
          {"domain_size", 2},
          {"tokens", 128},
          {"hidden", 7168},
          {"top_k", 8},
          {"experts", 256},
          {"expert_slots", 66},
          {"ctas", 64},
          {"threads", 512},
          {"ops_per_graph", 10},
          {"replays", 200},
          {"deadline_s", 30},
          {"remote_ctas", 48},
          {"programmatic", 0},
          {"dispatch_us", 24.4608},
          {"dispatch_p10_us", 24.3808},
          {"dispatch_p90_us", 24.5728},
          {"combine_us", 22.8032},
          {"combine_p10_us", 22.5184},
          {"combine_p90_us", 23.1296},
          {"nccl_dispatch_us", 30.5024},
          {"nccl_dispatch_p10_us", 30.1},
          {"nccl_dispatch_p90_us", 30.9},
          {"nccl_combine_us", 30.3776},
          {"nccl_combine_p10_us", 30.0},
          {"nccl_combine_p90_us", 30.7},
          {"lsa_dispatch_us", 20.3808},
          {"lsa_dispatch_p10_us", 20.1},
          {"lsa_dispatch_p90_us", 20.6},
          {"lsa_combine_us", 20.0288},
          {"lsa_combine_p10_us", 19.9},
          {"lsa_combine_p90_us", 20.2},
          {"lsa_pull_combine_us", 21.75},
          {"lsa_pull_combine_p10_us", 21.5},
          {"lsa_pull_combine_p90_us", 22.0},
          {"slab_dispatch_us", 41.25},
          {"slab_dispatch_p10_us", 40.5},
          {"slab_dispatch_p90_us", 42.0},
          {"slab_combine_us", 39.5},
          {"slab_combine_p10_us", 38.0},
          {"slab_combine_p90_us", 40.25},
          {"wire_dispatch_GBps", (0.1 + 0.2) / (24.4608 * 1e3)},
          {"wire_combine_GBps", 5e6 / (22.8032 * 1e3)},
          {"wire_nccl_dispatch_GBps", (0.1 + 0.2) / (30.5024 * 1e3)},
          {"wire_nccl_combine_GBps", 5e6 / (30.3776 * 1e3)},
          {"wire_lsa_dispatch_GBps", (0.1 + 0.2) / (20.3808 * 1e3)},
          {"wire_lsa_combine_GBps", 5e6 / (20.0288 * 1e3)},
          {"wire_lsa_pull_combine_GBps", 5e6 / (21.75 * 1e3)},
          {"wire_slab_dispatch_GBps", 2.5e6 / (41.25 * 1e3)},
          {"wire_slab_combine_GBps", 4.75e6 / (39.5 * 1e3)},
          {"logical_dispatch_GBps", (1.0 / 3.0) / (24.4608 * 1e3)},
          {"logical_combine_GBps", 6.25e6 / (22.8032 * 1e3)},
          {"dispatch_bytes_per_token", 7456},
          {"combine_bytes_per_token", 14336},
          {"wire_dispatch_bytes", 0.1 + 0.2},
          {"logical_dispatch_bytes", 1.0 / 3.0},
          {"wire_combine_bytes", 5e6},
          {"logical_combine_bytes", 6.25e6},
          {"slab_dispatch_bytes", 2.5e6},
          {"slab_combine_bytes", 4.75e6},
          {"model_wire_dispatch_bytes", 2.0 / 3.0},
          {"permute_us", 4.5},
          {"permute_p10_us", 4.0},
          {"permute_p90_us", 5.0},
          {"permute_bytes", 9e6},
          {"permute_GBps", 9e6 / (4.5 * 1e3)},
          {"permute_indexed_us", 1.5},
          {"permute_indexed_p10_us", 1.0},
          {"permute_indexed_p90_us", 2.0},
          {"permute_indexed_bytes", 3e5},
          {"permute_indexed_GBps", 3e5 / (1.5 * 1e3)},
          {"unpermute_us", 3.25},
          {"unpermute_p10_us", 3.0},
          {"unpermute_p90_us", 3.5},
          {"unpermute_bytes", 6.5e6},
          {"unpermute_GBps", 6.5e6 / (3.25 * 1e3)},
          {"busiest_permute_bytes", 1.2e7},
          {"busiest_permute_GBps", 1.2e7 / (4.5 * 1e3)},
          {"busiest_unpermute_bytes", 8e6},
          {"busiest_unpermute_GBps", 8e6 / (3.25 * 1e3)},
          {"quantize_us", 6.5},
          {"quantize_p10_us", 6.0},
          {"quantize_p90_us", 7.0},
          {"quantize_bytes", 1.3e6},
          {"quantize_GBps", 1.3e6 / (6.5 * 1e3)},
          {"quantized_dispatch_us", 25.5},
          {"quantized_dispatch_p10_us", 25.0},
          {"quantized_dispatch_p90_us", 26.0},
          {"quantize_then_dispatch_us", 31.0},
          {"quantize_then_dispatch_p10_us", 30.0},
          {"quantize_then_dispatch_p90_us", 32.0},
          {"wire_quantized_dispatch_GBps", (0.1 + 0.2) / (25.5 * 1e3)},
          {"wire_quantize_then_dispatch_GBps", (0.1 + 0.2) / (31.0 * 1e3)},
          {"fp8_combine_us", 12.5},
          {"fp8_combine_p10_us", 12.0},
          {"fp8_combine_p90_us", 13.0},
          {"wire_fp8_combine_GBps", 2.5e6 / (12.5 * 1e3)},
          {"fp8_prepare_us", 5.5},
          {"fp8_prepare_p10_us", 5.0},
          {"fp8_prepare_p90_us", 6.0},
          {"fp8_prepare_bytes", 4e6},
          {"fp8_prepare_GBps", 4e6 / (5.5 * 1e3)},
          {"wire_fp8_combine_bytes", 2.5e6},
          {"floor_dispatch_us", (0.1 + 0.2) / 450e3},
          {"floor_combine_us", 5e6 / 450e3},
          {"busiest_dispatch_ingress_bytes", 9e5},
          {"busiest_combine_egress_bytes", 1.8e6},
          {"busiest_floor_dispatch_us", 9e5 / 450e3},
          {"busiest_floor_combine_us", 1.8e6 / 450e3},
          // The total is the parts, each once: no window total counted on top of its regions.
          {"workspace_bytes", double(known_window_bytes + known_local_bytes + known_remote_bytes)},
          {"workspace_window_bytes", double(known_window_bytes)},
          {"workspace_local_bytes", double(known_local_bytes)},
          {"workspace_remote_bytes", double(known_remote_bytes)}};
}
}  // namespace

TEST(BenchReport, CsvAndJsonRoundTripAKnownReport) {
  temp_dir dir;
  const bench::result first = known_result();
  bench::result second = known_result();
  second.tokens = 4096;
  const std::string prefix = (dir.path / "missing" / "folder" / "run").string();  // folders are created
  {
    bench::report_files files(prefix);
    files.add(first);
    files.add(second);
    files.finish();
    EXPECT_EQ(files.csv_path(), prefix + ".csv");
    EXPECT_EQ(files.json_path(), prefix + ".json");
  }
  EXPECT_FALSE(fs::exists(prefix + ".json.tmp"));
  const auto strings = expected_strings();
  const auto numbers = expected_numbers();

  // CSV: the header is exactly the expected keys, and every cell reads back to the same value.
  const auto rows = read_csv(prefix + ".csv");
  ASSERT_EQ(rows.size(), 3u);
  const auto& header = rows[0];
  EXPECT_EQ(header.size(), strings.size() + numbers.size());
  for (const auto& key : header) EXPECT_TRUE(strings.count(key) + numbers.count(key) == 1) << "unexpected " << key;
  for (std::size_t row = 1; row < rows.size(); ++row) {
    ASSERT_EQ(rows[row].size(), header.size()) << "row " << row;
    for (std::size_t i = 0; i < header.size(); ++i) {
      const std::string& key = header[i];
      if (strings.count(key)) {
        EXPECT_EQ(rows[row][i], strings.at(key)) << key;
      } else {
        const double want = key == "tokens" ? (row == 1 ? 128 : 4096) : numbers.at(key);
        EXPECT_EQ(std::strtod(rows[row][i].c_str(), nullptr), want) << key << " = " << rows[row][i];
      }
    }
  }

  // JSON: the same keys with the same values, plus the workspace parts.
  const auto doc = nlohmann::json::parse(read_text(prefix + ".json"));
  ASSERT_TRUE(doc.is_array());
  ASSERT_EQ(doc.size(), 2u);
  for (std::size_t row = 0; row < 2; ++row) {
    const auto& object = doc[row];
    EXPECT_EQ(object.size(), header.size() + 1);
    for (const auto& [key, want] : strings) EXPECT_EQ(object.at(key).get<std::string>(), want) << key;
    for (const auto& [key, want] : numbers) {
      if (key == "tokens") continue;
      EXPECT_EQ(object.at(key).get<double>(), want) << key;
    }
    EXPECT_EQ(object.at("tokens").get<int>(), row == 0 ? 128 : 4096);
    std::int64_t parts = 0;
    for (const auto& [name, bytes] : object.at("workspace_parts").items()) parts += bytes.get<std::int64_t>();
    EXPECT_EQ(object.at("workspace_parts").size(), 7u);
    EXPECT_EQ(parts, object.at("workspace_bytes").get<std::int64_t>());
    EXPECT_EQ(object.at("workspace_parts").at("window.combine").get<int>(), 28672);
  }
}

TEST(BenchReport, WorkspacePartsAddUpToTheSessionsAllocation) {
  for (const char* payload : {"bf16", "fp8"})
    for (int ranks : {2, 8}) {
      const auto cfg = bench::make_config(
          bench::make_problem({7168, 8, 256, sim::routing::uniform, ranks == 8 ? 2 : 0}, ranks, 128, 1), payload, 64, 512);
      const auto layout = comm::plan_workspace(cfg);
      bench::result r;
      r.workspace = bench::workspace_parts(layout, cfg);
      EXPECT_EQ(bench::workspace_bytes(r), comm::workspace_bytes_per_rank(cfg)) << payload << " " << ranks;
      EXPECT_EQ(bench::workspace_bytes(r, "window."), layout.window_bytes);
      EXPECT_EQ(bench::workspace_bytes(r, "local."), layout.local_bytes);
      EXPECT_EQ(bench::workspace_bytes(r, "remote."), layout.remote_bytes);
      EXPECT_EQ(layout.remote_bytes > 0, ranks == 8);  // 8 ranks in domains of 2
      std::set<std::string> names;
      for (const auto& part : r.workspace) {
        EXPECT_TRUE(names.insert(part.name).second) << "twice: " << part.name;
        EXPECT_LT(part.bytes, layout.window_bytes) << part.name;  // a negative padding would wrap around
      }
      EXPECT_TRUE(names.count("window.payload_weights"));
    }
}

TEST(BenchReport, AnUnusableOutFailsBeforeTheSweep) {
  temp_dir dir;
  std::ofstream(dir.path / "blocker") << "a file where a folder must be";
  try {
    bench::report_files files((dir.path / "blocker" / "run").string());
    FAIL() << "a prefix under a regular file was accepted";
  } catch (const bench::output_error& e) {
    const std::string text = e.what();
    EXPECT_NE(text.find((dir.path / "blocker").string()), std::string::npos) << text;
    EXPECT_NE(text.find("output folder"), std::string::npos) << text;
    EXPECT_NE(text.find("--out"), std::string::npos) << text;  // what to do
  }
  // The JSON's place is a folder: caught now, not after the sweep; no CSV is started.
  fs::create_directories(dir.path / "run.json");
  try {
    bench::report_files files((dir.path / "run").string());
    FAIL() << "a JSON path that is a folder was accepted";
  } catch (const bench::output_error& e) {
    EXPECT_NE(std::string(e.what()).find("run.json"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(fs::exists(dir.path / "run.csv"));
  if (::geteuid() != 0) {  // root writes anywhere: the permission case only fails for users
    fs::create_directories(dir.path / "locked");
    fs::permissions(dir.path / "locked", fs::perms::owner_read | fs::perms::owner_exec);
    try {
      bench::report_files files((dir.path / "locked" / "run").string());
      FAIL() << "a read-only folder was accepted";
    } catch (const bench::output_error& e) {
      EXPECT_NE(std::string(e.what()).find("Permission denied"), std::string::npos) << e.what();
    }
  }
}

TEST(BenchReport, AFailingWriteNamesThePathAndTheOsError) {
  if (!fs::exists("/dev/full")) GTEST_SKIP() << "no /dev/full on this machine";
  temp_dir dir;
  fs::create_symlink("/dev/full", dir.path / "run.csv");  // every write fails with ENOSPC
  try {
    bench::report_files files((dir.path / "run").string());
    FAIL() << "the CSV header was reported written to /dev/full";
  } catch (const bench::output_error& e) {
    const std::string text = e.what();
    EXPECT_NE(text.find("run.csv"), std::string::npos) << text;
    EXPECT_NE(text.find(std::strerror(ENOSPC)), std::string::npos) << text;
  }
}

TEST(BenchReport, AnAbortedSweepKeepsItsRowsAndLeavesNoJson) {
  temp_dir dir;
  const std::string prefix = (dir.path / "run").string();
  std::ofstream(prefix + ".json") << "[] (an earlier run's)";
  {
    bench::report_files files(prefix);
    EXPECT_FALSE(fs::exists(prefix + ".json")) << "an earlier run's JSON would pass for this run's";
    files.add(known_result());
    files.add(known_result());
    EXPECT_EQ(read_csv(prefix + ".csv").size(), 3u) << "rows are flushed as they are added";
  }  // destroyed without finish(): the sweep died
  EXPECT_EQ(read_csv(prefix + ".csv").size(), 3u);
  EXPECT_FALSE(fs::exists(prefix + ".json"));
  EXPECT_FALSE(fs::exists(prefix + ".json.tmp"));
}

TEST(BenchReport, HelpExplainsEveryTableAndFileColumn) {
  std::string help;
  EXPECT_FALSE(bench::parse_options({"--help"}, &help));
  for (const char* word : {"done", "elapsed", "EP", "H, k, E", "routing", "payload", "T ", "disp us", "comb us",
                           "wire GB/s", "logicGB", "nccl d/c", "lsa d/c", "lsa pc", "vsNCd/c", "busbw", "algbw"})
    EXPECT_NE(help.find(word), std::string::npos) << word;
  for (const auto& c : bench::columns()) EXPECT_NE(help.find(c.key), std::string::npos) << c.key;
  for (std::size_t start = 0, end; start < help.size(); start = end + 1) {
    end = help.find('\n', start);
    if (end == std::string::npos) end = help.size();
    EXPECT_LE(end - start, 100u) << help.substr(start, end - start);
  }
}

// The baselines' pair bytes, from rank 1's side of a skewed 3-rank routing (counts[dst][src]):
// the pull must load what rank 1 dispatched to each rank, never what it received, or under skew
// the hot rank's traffic lands on its own loads (the raw pull's first version).
TEST(BenchTraffic, CombineRowsGoBackTheWayTheTokensCame) {
  const std::vector<std::vector<int>> counts = {{5, 40, 7},   // to rank 0 (hot) from 0, 1, 2
                                                {1, 2, 3},
                                                {0, 9, 4}};
  const bench::step_bytes b = bench::step_bytes_of(counts, 1, 100, 10);
  EXPECT_EQ(b.dispatch.send, (std::vector<std::size_t>{4000, 200, 900})) << "rank 1 sends counts[d][1] tokens to d";
  EXPECT_EQ(b.dispatch.recv, (std::vector<std::size_t>{100, 200, 300})) << "rank 1 receives counts[1][d] from d";
  EXPECT_EQ(b.combine.send, (std::vector<std::size_t>{10, 20, 30})) << "rows of d's tokens go back to d";
  EXPECT_EQ(b.combine.recv, (std::vector<std::size_t>{400, 20, 90})) << "rank 1 gets (pulls) its own tokens' rows";
}

TEST(BenchReport, RowsShowProgressAndElapsedTime) {
  ::testing::internal::CaptureStdout();
  bench::print_header();
  bench::print_row(known_result(), 3, 8, 3725.0);
  bench::print_row(known_result(), 4, 8, 65.0);
  const std::string out = ::testing::internal::GetCapturedStdout();
  EXPECT_NE(out.find("elapsed"), std::string::npos) << out;
  EXPECT_NE(out.find("3/8"), std::string::npos) << out;
  EXPECT_NE(out.find("1:02:05"), std::string::npos) << out;
  EXPECT_NE(out.find("1:05"), std::string::npos) << out;
  EXPECT_NE(out.find("CTAs"), std::string::npos) << out;
  EXPECT_NE(out.find("lsa pc"), std::string::npos) << out;
  // The row carries every baseline: the raw store copies, then the raw pull (21.75 -> 21.8).
  EXPECT_NE(out.find("20.4     20.0     21.8"), std::string::npos) << out;
}

TEST(BenchOptions, OutMustBeAFilePrefix) {
  EXPECT_THROW(bench::parse_options({"--out", ""}), comm::error);
  EXPECT_THROW(bench::parse_options({"--out", "results/"}), comm::error);
  EXPECT_EQ(bench::nccl_version_string(22809), "2.28.9");
}
