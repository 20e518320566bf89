#include <gtest/gtest.h>

#include "bench.hpp"
#include "epgraph/comm/error.hpp"

using namespace epgraph;

TEST(BenchOptions, DefaultsSweepTheReferenceShapes) {
  auto o = bench::parse_options({});
  ASSERT_TRUE(o);
  EXPECT_EQ(o->tokens, (std::vector<int>{1, 128, 512, 4096}));
  EXPECT_EQ(o->payloads, (std::vector<std::string>{"bf16", "fp8"}));
  EXPECT_EQ(o->ops_per_graph, 10);
  // One shape by default: the reference H=7168, top-8 of 256 experts, uniform routing.
  EXPECT_EQ(bench::sweep_shapes(*o), (std::vector<bench::shape>{{7168, 8, 256, sim::routing::uniform}}));
}

TEST(BenchOptions, ParsesListsAndRejectsBadOnes) {
  auto o = bench::parse_options({"--tokens", "64,2048", "--payload", "fp8", "--ctas", "128", "--out", "x/y"});
  ASSERT_TRUE(o);
  EXPECT_EQ(o->tokens, (std::vector<int>{64, 2048}));
  EXPECT_EQ(o->payloads, (std::vector<std::string>{"fp8"}));
  EXPECT_EQ(o->ctas, 128);
  EXPECT_EQ(o->out, "x/y");
  EXPECT_THROW(bench::parse_options({"--tokens", "12,abc"}), comm::error);
  EXPECT_THROW(bench::parse_options({"--tokens", "0"}), comm::error);
  EXPECT_THROW(bench::parse_options({"--payload", "nvfp4"}), comm::error);
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
