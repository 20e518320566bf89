#include <gtest/gtest.h>

#include "demo_options.hpp"
#include "epgraph/comm/error.hpp"

using namespace epgraph;

TEST(DemoOptions, DefaultsAreTheReadmeShape) {
  auto o = demo::parse_options({});
  ASSERT_TRUE(o);
  EXPECT_EQ(o->problem.hidden, 7168);
  EXPECT_EQ(o->problem.top_k, 8);
  EXPECT_EQ(o->problem.num_experts, 256);
  EXPECT_EQ(o->problem.dtype, comm::element_type::bf16);
  EXPECT_EQ(o->steps, 200);
  EXPECT_EQ(o->which, demo::variant::both);
}

TEST(DemoOptions, ParsesEveryKnob) {
  auto o = demo::parse_options({"--tokens", "64", "--hidden", "2880", "--top-k", "4", "--experts", "64", "--dtype",
                                "fp16", "--steps", "7", "--variant", "staged", "--routing", "skewed", "--seed", "9"});
  ASSERT_TRUE(o);
  EXPECT_EQ(o->problem.max_tokens, 64);
  EXPECT_EQ(o->problem.hidden, 2880);
  EXPECT_EQ(o->problem.top_k, 4);
  EXPECT_EQ(o->problem.num_experts, 64);
  EXPECT_EQ(o->problem.dtype, comm::element_type::fp16);
  EXPECT_EQ(o->steps, 7);
  EXPECT_EQ(o->which, demo::variant::staged);
  EXPECT_EQ(o->problem.dist, sim::routing::skewed);
  EXPECT_EQ(o->problem.seed, 9u);
}

TEST(DemoOptions, HelpListsEveryOptionWithItsDefault) {
  std::string help;
  EXPECT_FALSE(demo::parse_options({"--help"}, &help));
  for (const char* text : {"--tokens", "(=256)", "--hidden", "(=7168)", "--variant", "--routing", "--watchdog", "--deadline"})
    EXPECT_NE(help.find(text), std::string::npos) << text;
}

TEST(DemoOptions, BadValuesNameTheOption) {
  auto rejects = [](std::vector<std::string> args, const std::string& fragment) {
    try {
      demo::parse_options(args);
      ADD_FAILURE() << "accepted";
    } catch (const comm::error& e) {
      EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
    }
  };
  rejects({"--dtype", "fp8"}, "unknown element type 'fp8'");
  rejects({"--variant", "fast"}, "--variant");
  rejects({"--routing", "zipf"}, "unknown distribution 'zipf'");
  rejects({"--steps", "0"}, "--steps");
  rejects({"--tokens", "many"}, "tokens");
  rejects({"--no-such-option"}, "no-such-option");
  // A NaN watchdog used to switch the watchdog off silently.
  for (const char* bad : {"nan", "inf", "-1"}) {
    rejects({"--watchdog", bad}, "--watchdog");
    rejects({"--deadline", bad}, "--deadline");
  }
}

TEST(DemoOptions, DeadlineAndWatchdogAcceptZeroAsOff) {
  auto o = demo::parse_options({"--watchdog", "0", "--deadline", "0"});
  ASSERT_TRUE(o);
  EXPECT_EQ(o->watchdog_seconds, 0.0);
  EXPECT_EQ(o->deadline_seconds, 0.0);
  EXPECT_EQ(demo::parse_options({})->deadline_seconds, 30.0);
}
