#include <gtest/gtest.h>

#include "bench.hpp"
#include "epgraph/comm/error.hpp"

using namespace epgraph;

TEST(BenchOptions, DefaultsSweepTheReferenceShapes) {
  auto o = bench::parse_options({});
  ASSERT_TRUE(o);
  EXPECT_EQ(o->tokens, (std::vector<int>{1, 128, 512, 4096}));
  EXPECT_EQ(o->payloads, (std::vector<std::string>{"bf16", "fp8"}));
  EXPECT_EQ(o->hidden, 7168);
  EXPECT_EQ(o->top_k, 8);
  EXPECT_EQ(o->experts, 256);
  EXPECT_EQ(o->ops_per_graph, 10);
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
