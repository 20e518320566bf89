// The multiply-and-shift division the kernels use for an expert's rank (fast_divisor.hpp).
#include <gtest/gtest.h>

#include <cstdint>
#include <random>

#include "epgraph/comm/fast_divisor.hpp"
#include "epgraph/comm/ep_config.hpp"
#include "epgraph/comm/session_view.hpp"
#include "epgraph/comm/workspace_layout.hpp"

using epgraph::comm::fast_divisor;

TEST(FastDivisor, EqualsIntegerDivisionForEverySmallDivisorAndDividend) {
  long long wrong = 0;
  for (int d = 1; d <= 1024; ++d) {
    const fast_divisor f = fast_divisor::of(d);
    for (int n = 0; n < 1 << 16; ++n) wrong += f.divide(n) != n / d;
  }
  EXPECT_EQ(wrong, 0);
}

TEST(FastDivisor, EqualsIntegerDivisionAtTheEdgesAndForRandomPairs) {
  constexpr int kMax = 0x7fffffff;
  std::mt19937 rng(11);
  long long wrong = 0;
  for (int i = 0; i < 200000; ++i) {
    const int d = i < 64 ? kMax - i : static_cast<int>(rng() % kMax) + 1;
    const fast_divisor f = fast_divisor::of(d);
    for (const int n : {0, 1, d - 1, d, kMax - 1, kMax, static_cast<int>(rng() % kMax)}) wrong += f.divide(n) != n / d;
  }
  // Divisors up to 4096, around their multiples (every session's divisor: the test below).
  for (int d = 1; d <= 4096; ++d) {
    const fast_divisor f = fast_divisor::of(d);
    for (long long q = 1; q * d <= kMax && q < 100000; q = q * 3 + 1)
      for (const long long n : {q * d - 1, q * d, q * d + 1})
        if (n <= kMax) wrong += f.divide(static_cast<int>(n)) != n / d;
  }
  EXPECT_EQ(wrong, 0);
}

// Every divisor and dividend a session can give dispatch: experts per rank d <= max_experts and
// expert ids n < max_experts. divide(n) = (n * m) >> s never decreases as n grows, so it equals
// n / d everywhere below max_experts when it does at both sides of every multiple of d there.
TEST(FastDivisor, EqualsIntegerDivisionForEverySessionsExpertsAndIds) {
  constexpr long long kIds = epgraph::comm::max_experts;
  long long wrong = 0;
  for (int d = 1; d <= kIds; ++d) {
    const fast_divisor f = fast_divisor::of(d);
    wrong += f.divide(0) != 0;
    for (long long q = 1; q * d < kIds; ++q)
      wrong += (f.divide(static_cast<int>(q * d - 1)) != q - 1) + (f.divide(static_cast<int>(q * d)) != q);
    wrong += f.divide(static_cast<int>(kIds - 1)) != (kIds - 1) / d;
  }
  EXPECT_EQ(wrong, 0);
}

TEST(FastDivisor, SmallCasesAndTheDefault) {
  const fast_divisor f = fast_divisor::of(96);
  EXPECT_EQ(f.divide(95), 0);
  EXPECT_EQ(f.divide(96), 1);
  EXPECT_EQ(f.divide(383), 3);
  EXPECT_EQ(fast_divisor{}.divide(12345), 12345);  // the default divides by 1
  EXPECT_EQ(fast_divisor::of(0).divide(7), 7);     // a divisor below 1 is taken as 1
}

TEST(FastDivisor, TheSessionViewDividesAnExpertIdByExpertsPerRank) {
  epgraph::comm::ep_config c;
  c.ep_size = 3;
  c.max_tokens_per_rank = 16;
  c.top_k = 4;
  c.num_experts = 3 * 40;
  c.hidden = 64;
  c.payloads = {{"hidden", 128}};
  const epgraph::comm::session_view v =
      epgraph::comm::make_session_view(c, epgraph::comm::plan_workspace(c), 1, nullptr, nullptr, nullptr, nullptr);
  for (int e = 0; e < c.num_experts; ++e) EXPECT_EQ(v.per_rank.divide(e), e / 40) << e;
  // Programmatic dependent launch is on unless the config turns it off; the view carries it.
  EXPECT_TRUE(v.programmatic_launch);
  c.programmatic_launch = false;
  EXPECT_FALSE(epgraph::comm::make_session_view(c, epgraph::comm::plan_workspace(c), 1, nullptr, nullptr, nullptr, nullptr)
                   .programmatic_launch);
}
