// epg-bench's scripts on files its writer wrote: scripts/plot_bench.py draws a sweep and rejects
// bad input; scripts/compare_ab.py reads the rounds of an A/B call (medians, differences,
// disturbed measurements left out, the merged raw file).
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "bench.hpp"
#include "bench_test_files.hpp"

using namespace epgraph;
using namespace epgraph::bench_test;

// ---- scripts/plot_bench.py on a CSV from the writer above ----

namespace {
// The command that runs scripts/<name> of this repository (found from this file's path: CMake
// compiles it by its absolute path), or empty with *skip saying why the test cannot run it.
std::string script_command(const std::string& name, std::string* skip) {
  const fs::path script = fs::path(__FILE__).parent_path().parent_path().parent_path() / "scripts" / name;
  if (!fs::exists(script)) *skip = script.string() + " not found";
  else if (std::system("python3 --version > /dev/null 2>&1") != 0) *skip = "no python3 on PATH";
  return skip->empty() ? "python3 '" + script.string() + "'" : "";
}

// Runs a shell command; its exit status, and its output in *out.
int run_command(const std::string& command, const fs::path& log, std::string* out) {
  const int status = std::system((command + " > '" + log.string() + "' 2>&1").c_str());
  *out = read_text(log);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// A small sweep as epg-bench would write it: two payloads, three token counts.
void write_fixture(const std::string& prefix) {
  bench::report_files files(prefix);
  for (const char* payload : {"bf16", "fp8"})
    for (int tokens : {1, 128, 4096}) {
      bench::result r = known_result();
      r.payload = payload;
      r.tokens = tokens;
      const double scale = 1 + tokens / 16.0;
      for (bench::stats* s :
           {&r.dispatch, &r.combine, &r.nccl_dispatch, &r.nccl_combine, &r.lsa_dispatch, &r.lsa_combine,
            &r.lsa_pull_combine})
        *s = {s->median * scale * 0.8, s->median * scale, s->median * scale * 1.3};  // a visible band
      r.wire_dispatch_bytes = tokens * 3.61 * 0.75 * r.dispatch_bytes_per_token;
      r.wire_combine_bytes = tokens * 3.61 * 0.75 * r.combine_bytes_per_token;
      files.add(r);
    }
  files.finish();
}
}  // namespace

TEST(BenchPlot, DrawsAWrittenCsvAndRejectsBadInput) {
  std::string skip;
  const std::string script = script_command("plot_bench.py", &skip);
  if (!skip.empty()) GTEST_SKIP() << skip;
  temp_dir dir;
  const fs::path log = dir.path / "log", png = dir.path / "plot.png";
  std::string out;

  // Usage errors come before matplotlib is needed: exit 2 and say what is wrong.
  EXPECT_EQ(run_command(script, log, &out), 2) << out;
  EXPECT_NE(out.find("usage:"), std::string::npos) << out;
  EXPECT_EQ(run_command(script + " --help", log, &out), 0) << out;
  EXPECT_NE(out.find("p10-p90"), std::string::npos) << out;
  EXPECT_EQ(run_command(script + " x.png '" + (dir.path / "missing.csv").string() + "'", log, &out), 2) << out;
  EXPECT_NE(out.find("missing.csv"), std::string::npos) << out;
  { bench::report_files header_only((dir.path / "empty").string()); }  // a sweep that died before its first row
  EXPECT_EQ(run_command(script + " x.png '" + (dir.path / "empty.csv").string() + "'", log, &out), 2) << out;
  EXPECT_NE(out.find("no rows"), std::string::npos) << out;

  write_fixture((dir.path / "fixture").string());
  const int status =
      run_command(script + " '" + png.string() + "' '" + (dir.path / "fixture.csv").string() + "'", log, &out);
  if (status != 0 && out.find("needs matplotlib") != std::string::npos)
    GTEST_SKIP() << "matplotlib is missing (scripts/deps.sh installs python3-matplotlib): "
                 << out;
  ASSERT_EQ(status, 0) << out;
  const std::string image = read_text(png);
  ASSERT_GT(image.size(), 1000u) << out;
  EXPECT_EQ(image.substr(1, 3), "PNG");
}

// ---- scripts/compare_ab.py on compare files from the writer above ----

namespace {
// A CSV file's rows as column -> field (read_csv: RFC 4180).
std::vector<std::map<std::string, std::string>> read_csv_maps(const fs::path& p) {
  const auto rows = read_csv(p);
  std::vector<std::map<std::string, std::string>> out;
  for (std::size_t r = 1; r < rows.size(); ++r) {
    std::map<std::string, std::string>& row = out.emplace_back();
    for (std::size_t i = 0; i < rows[0].size() && i < rows[r].size(); ++i) row[rows[0][i]] = rows[r][i];
  }
  return out;
}

// Rounds of an A/B call as gpu-check's compare stage names them: builds `head` and `fast`, three
// rounds, three token counts (dispatch us per round; combine is twice that):
//  * T = 128: every `fast` round below every `head` round;
//  * T = 512: `fast` slower, every round above;
//  * T = 4096: rounds that overlap; `fast`'s third round ran while the machine slowed down (its
//    LSA copy 6% off its median: left out, with the row's combine), `head`'s third has a raw copy
//    4% off (kept) and a combine whose replays spread (p90 1.2x p10: that measurement left out).
struct round_values {
  int tokens;
  double head[3], fast[3];
};
constexpr round_values kRounds[] = {{128, {10.0, 10.1, 10.5}, {9.0, 9.2, 9.3}},
                                    {512, {20.0, 20.2, 20.4}, {21.0, 21.5, 21.1}},
                                    {4096, {100, 104, 102}, {101, 104.5, 300}}};

void write_compare_fixture(const fs::path& dir) {
  for (int round = 1; round <= 3; ++round)
    for (const std::string build : {"head", "fast"}) {
      bench::report_files files((dir / ("compare_np4_" + build + "_r" + std::to_string(round))).string());
      for (const round_values& v : kRounds) {
        bench::result r = known_result();
        r.tokens = v.tokens;
        const double us = (build == "head" ? v.head : v.fast)[round - 1];
        r.dispatch = {us * 0.99, us, us * 1.01};
        r.combine = {2 * us * 0.99, 2 * us, 2 * us * 1.01};
        double lsa = 50;
        if (v.tokens == 4096 && round == 3) {
          lsa = build == "fast" ? 53 : 48;
          if (build == "head") r.combine = {2 * us, 2 * us * 1.1, 2 * us * 1.2};
        }
        r.lsa_dispatch = {lsa * 0.99, lsa, lsa * 1.01};
        r.lsa_combine = {100, 100, 100};
        files.add(r);
      }
      files.finish();
    }
}
}  // namespace

TEST(BenchCompare, MediansDifferencesAndDisturbedRowsOfAnABCall) {
  std::string skip;
  const std::string script = script_command("compare_ab.py", &skip);
  if (!skip.empty()) GTEST_SKIP() << skip;
  temp_dir dir;
  const fs::path log = dir.path / "log", table = dir.path / "table.csv", raw = dir.path / "raw.csv";
  const std::string folder = " '" + dir.path.string() + "'";
  std::string out;

  EXPECT_EQ(run_command(script + " --base head" + folder, log, &out), 2) << out;
  EXPECT_NE(out.find("no compare_np"), std::string::npos) << out;
  write_compare_fixture(dir.path);
  EXPECT_EQ(run_command(script + " --base base" + folder, log, &out), 2) << out;
  EXPECT_NE(out.find("'base' is not among the files' builds: fast, head"), std::string::npos) << out;
  EXPECT_EQ(run_command(script + " --base head --ops nosuch" + folder, log, &out), 2) << out;
  EXPECT_NE(out.find("no column nosuch_us"), std::string::npos) << out;
  EXPECT_EQ(run_command(script + " --base head --tag gpu=x" + folder, log, &out), 2) << out;

  // The folder twice: each file is read once.
  ASSERT_EQ(run_command(script + " --base head --csv '" + table.string() + "' --merge '" + raw.string() +
                            "' --tag call=7" + folder + folder,
                        log, &out),
            0)
      << out;
  std::map<std::pair<std::string, std::string>, std::map<std::string, std::string>> cells;  // (tokens, op)
  for (auto& row : read_csv_maps(table)) cells[{row["tokens"], row["op"]}] = row;
  ASSERT_EQ(cells.size(), 6u) << out;
  const auto text = [&](const char* tokens, const char* op, const char* column) {
    return cells.at({tokens, op}).at(column);
  };
  const auto num = [&](const char* tokens, const char* op, const char* column) {
    return std::stod(text(tokens, op, column));
  };
  EXPECT_EQ(text("128", "dispatch", "build"), "fast");
  EXPECT_NEAR(num("128", "dispatch", "base_us"), 10.1, 1e-9);  // medians, not means
  EXPECT_NEAR(num("128", "dispatch", "build_us"), 9.2, 1e-9);
  EXPECT_NEAR(num("128", "dispatch", "build_min_us"), 9.0, 1e-9);
  EXPECT_NEAR(num("128", "dispatch", "delta_us"), -0.9, 1e-9);
  EXPECT_EQ(text("128", "dispatch", "sep"), "<");
  EXPECT_NEAR(num("128", "dispatch", "spread_percent"), 100 * 0.5 / 10.1, 1e-9);
  EXPECT_NEAR(num("128", "combine", "delta_us"), -1.8, 1e-9);
  EXPECT_EQ(text("512", "dispatch", "sep"), ">");
  EXPECT_NEAR(num("512", "dispatch", "delta_us"), 0.9, 1e-9);
  // T = 4096: fast's disturbed row left out (its median of 101 and 104.5), head's 4% copy kept;
  // head's spread combine left out; too few rounds left to call the order.
  EXPECT_NEAR(num("4096", "dispatch", "base_us"), 102, 1e-9);
  EXPECT_NEAR(num("4096", "dispatch", "build_us"), 102.75, 1e-9);
  EXPECT_EQ(num("4096", "dispatch", "build_rounds"), 2);
  EXPECT_EQ(num("4096", "dispatch", "base_rounds"), 3);
  EXPECT_EQ(num("4096", "dispatch", "disturbed"), 1);
  EXPECT_EQ(text("4096", "dispatch", "sep"), "?");
  EXPECT_EQ(num("4096", "combine", "base_rounds"), 2);
  EXPECT_EQ(num("4096", "combine", "disturbed"), 2);
  EXPECT_NE(out.find("6 cells compared, 0 without rounds of both builds, 3 measurements left out"), std::string::npos)
      << out;

  // The merged file: every input row once, the tag, build and round first, then every column.
  const auto merged = read_csv_maps(raw);
  EXPECT_EQ(merged.size(), 18u);
  EXPECT_EQ(read_text(raw).substr(0, 21), "call,build,round,gpu,");
  std::set<std::string> rounds;
  for (const auto& row : merged) rounds.insert(row.at("call") + row.at("build") + row.at("round") + row.at("gpu"));
  EXPECT_EQ(rounds.size(), 6u);
  EXPECT_EQ(rounds.count("7fast3NVIDIA H200 \"test\", rev 1"), 1u);
  EXPECT_EQ(merged[0].at("lsa_combine_us"), "100");

  // Every measurement of the base left out: the cell is listed as empty and the exit status is 1.
  EXPECT_EQ(run_command(script + " --base head --band 0.5" + folder, log, &out), 1) << out;
  EXPECT_NE(out.find("0 cells compared, 6 without rounds of both builds"), std::string::npos) << out;
}
