#include <gtest/gtest.h>

#include "bench.hpp"
#include "demo_options.hpp"
#include "epgraph/comm/error.hpp"

using namespace epgraph;

namespace {
// Parses args and, with ranks > 0, validates them for that many MPI ranks as epg-demo does
// before its GPU check; expects a config error whose text contains every fragment.
void expect_rejected(const std::vector<std::string>& args, int ranks, const std::vector<std::string>& fragments) {
  std::string joined;
  for (const auto& a : args) joined += a + " ";
  try {
    auto o = demo::parse_options(args);
    ASSERT_TRUE(o) << joined;
    if (ranks > 0) demo::validate(*o, ranks);
    ADD_FAILURE() << "accepted: " << joined << "on " << ranks << " ranks";
  } catch (const comm::error& e) {
    EXPECT_EQ(e.domain(), comm::error_domain::config) << e.what();
    for (const auto& fragment : fragments)
      EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << joined << "\n" << e.what();
  }
}
}  // namespace

TEST(DemoOptions, DefaultsAreTheReadmeShape) {
  auto o = demo::parse_options({});
  ASSERT_TRUE(o);
  EXPECT_EQ(o->problem.hidden, 7168);
  EXPECT_EQ(o->problem.top_k, 8);
  EXPECT_EQ(o->problem.num_experts, 256);
  EXPECT_EQ(o->problem.dtype, comm::element_type::bf16);
  EXPECT_EQ(o->steps, 200);
  EXPECT_EQ(o->which, demo::variant::both);
  EXPECT_EQ(o->rows, demo::layout::source_major);
  EXPECT_FALSE(o->masked);
  EXPECT_EQ(o->host_check_every, 10);  // sampled: one host check takes seconds at T=4096
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
  o = demo::parse_options({"--layout", "expert-major", "--form", "masked"});
  ASSERT_TRUE(o);
  EXPECT_EQ(o->rows, demo::layout::expert_major);
  EXPECT_TRUE(o->masked);
  EXPECT_FALSE(o->indexed);
  o = demo::parse_options({"--layout", "expert-major", "--indexed"});
  ASSERT_TRUE(o);
  EXPECT_TRUE(o->indexed);
  EXPECT_FALSE(o->masked);
}

TEST(DemoOptions, HelpListsEveryOptionWithItsDefault) {
  std::string help;
  EXPECT_FALSE(demo::parse_options({"--help"}, &help));
  for (const char* text : {"--tokens", "(=256)", "--hidden", "(=7168)", "--variant", "--layout", "--form", "--indexed",
                           "--routing", "--watchdog", "--deadline",
                           "--host-check-every", "(=10)"})
    EXPECT_NE(help.find(text), std::string::npos) << text;
}

TEST(DemoOptions, HelpSaysWhatIsCheckedWhen) {
  std::string help;
  EXPECT_FALSE(demo::parse_options({"--help"}, &help));
  // Boost wraps long descriptions: compare with the line breaks and indentation removed.
  std::string flat;
  for (char c : help) {
    if (c == '\n') c = ' ';
    if (c != ' ' || flat.empty() || flat.back() != ' ') flat += c;
  }
  for (const char* text : {"on every step a GPU kernel compares every output element with the reference, bit-exactly",
                           "on steps 1, 1+N, 1+2N, ... and the last, the output is also copied to the host",
                           "(1 = every step)"})
    EXPECT_NE(flat.find(text), std::string::npos) << text << "\n" << flat;
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
  rejects({"--layout", "token-major"}, "config error in --layout: is 'token-major' -- use source-major or expert-major");
  rejects({"--form", "dense"}, "config error in --form: is 'dense' -- use packed or masked");
  rejects({"--indexed"},
          "config error in --indexed: is set without --layout expert-major -- add --layout expert-major");
  rejects({"--routing", "zipf"}, "unknown distribution 'zipf'");
  rejects({"--steps", "0"}, "--steps");
  rejects({"--tokens", "many"}, "tokens");
  rejects({"--no-such-option"}, "no-such-option");
  rejects({"--steps", "0"}, "config error in --steps: is 0 -- use at least 1");
  rejects({"--host-check-every", "0"}, "config error in --host-check-every: is 0 -- use N >= 1");
  rejects({"--inject-stall", "1"}, "config error in --inject-stall: is '1' -- use RANK:STEP");
  rejects({"--steps", "5", "--inject-stall", "1:5"}, "--inject-stall: step 5 is not one of the 5 steps");
  // A NaN watchdog used to switch the watchdog off silently.
  for (const char* bad : {"nan", "inf", "-1"}) {
    rejects({"--watchdog", bad}, "--watchdog");
    rejects({"--deadline", bad}, "--deadline");
  }
}

TEST(DemoOptions, ReducedPrecisionsParseAndTheirNeedsAreChecked) {
  auto o = demo::parse_options({});
  ASSERT_TRUE(o);
  EXPECT_FALSE(o->problem.quantize);
  EXPECT_EQ(o->problem.combine, kernels::combine_precision::exact);
  o = demo::parse_options({"--quantize", "fp8-ue8m0", "--combine-precision", "fp8"});
  ASSERT_TRUE(o);
  EXPECT_TRUE(o->problem.quantize);
  EXPECT_EQ(o->problem.scales, kernels::fp8::scale_format::ue8m0);
  EXPECT_EQ(o->problem.combine, kernels::combine_precision::fp8);
  o = demo::parse_options({"--quantize", "fp8", "--layout", "expert-major"});  // the permute moves the scales
  ASSERT_TRUE(o);
  EXPECT_EQ(o->problem.scales, kernels::fp8::scale_format::fp32);
  EXPECT_TRUE(o->problem.expert_major);  // the references follow the expert-major order
  EXPECT_FALSE(demo::parse_options({})->problem.expert_major);
  o = demo::parse_options({"--combine-precision", "bf16", "--dtype", "fp32"});
  ASSERT_TRUE(o);
  EXPECT_EQ(o->problem.combine, kernels::combine_precision::bf16);
  // The session config carries the quantizing dispatch's payloads: codes, weights, scales.
  o = demo::parse_options({"--quantize", "fp8", "--hidden", "1000"});
  ASSERT_TRUE(o);
  o->problem.ep_size = 2;
  const comm::ep_config c = demo::session_config(*o);
  ASSERT_EQ(c.payloads.size(), 3u);
  EXPECT_EQ(c.payloads[0].row_bytes, 1000u);
  EXPECT_EQ(c.payloads[2].row_bytes, 8u * 4);

  expect_rejected({"--quantize", "int8"}, 0, {"config error in --quantize: is 'int8'", "use none, fp8 or fp8-ue8m0"});
  expect_rejected({"--quantize", "fp8", "--dtype", "fp16"}, 0, {"--quantize: quantizes bf16 rows but --dtype is fp16"});
  expect_rejected({"--quantize", "fp8", "--hidden", "1004"}, 0, {"--quantize: needs --hidden % 8 == 0, not 1004"});
  expect_rejected({"--combine-precision", "fp4"}, 0, {"--combine-precision: is 'fp4'", "use exact, fp8 or bf16"});
  expect_rejected({"--combine-precision", "fp8", "--dtype", "fp32"}, 0,
                  {"--combine-precision: is fp8 but --dtype is fp32", "use --dtype bf16"});
  expect_rejected({"--combine-precision", "bf16"}, 0, {"is bf16 but --dtype is bf16", "use --dtype fp32"});
  expect_rejected({"--combine-precision", "fp8", "--hidden", "1032"}, 0, {"is fp8 but --hidden is 1032"});
  expect_rejected({"--combine-precision", "fp8", "--variant", "zero-copy"}, 0, {"beside --variant zero-copy"});
  expect_rejected({"--combine-precision", "fp8", "--layout", "expert-major"}, 0, {"beside --layout expert-major"});
}

TEST(DemoOptions, DeadlineAndWatchdogAcceptZeroAsOff) {
  auto o = demo::parse_options({"--watchdog", "0", "--deadline", "0"});
  ASSERT_TRUE(o);
  EXPECT_EQ(o->watchdog_seconds, 0.0);
  EXPECT_EQ(o->deadline_seconds, 0.0);
  EXPECT_EQ(demo::parse_options({})->deadline_seconds, 30.0);
}

// Stray words used to be dropped silently (`--tokens 64 128` ran with 64).
TEST(DemoOptions, StrayWordsAreRejected) {
  expect_rejected({"4096"}, 0,
                  {"config error in command line: has a stray argument '4096' that belongs to no option",
                   "see epg-demo --help"});
  expect_rejected({"--tokens", "64", "128"}, 0, {"stray argument '128'"});
  expect_rejected({"--steps", "5", "staged"}, 0, {"stray argument 'staged'"});
  expect_rejected({"--", "--tokens"}, 0, {"stray argument '--tokens'"});
}

TEST(BenchOptions, StrayWordsAreRejectedByTheSharedParser) {
  try {
    bench::parse_options({"--tokens", "1", "128"});
    ADD_FAILURE() << "accepted a stray word";
  } catch (const comm::error& e) {
    EXPECT_NE(std::string(e.what()).find("stray argument '128' that belongs to no option"), std::string::npos)
        << e.what();
    EXPECT_NE(std::string(e.what()).find("see epg-bench --help"), std::string::npos) << e.what();
  }
}

// Each of these used to pass parsing and only fail in the session, after the GPU check, so a
// machine without GPUs said "needs a GPU" instead of naming the option.
TEST(DemoOptions, RankCountChecksNameTheOption) {
  expect_rejected({"--tokens", "-5"}, 4, {"config error in --tokens: is -5, allowed range [1, 1048576]",
                                          "; session field max_tokens_per_rank, ep_size = 4 MPI ranks -- change --tokens to an allowed value"});
  expect_rejected({"--tokens", "0"}, 1, {"config error in --tokens: is 0", "ep_size = 1 MPI rank --"});
  expect_rejected({"--experts", "7"}, 4,
                  {"config error in --experts: is 7, not divisible by ep_size 4",
                   "; session field num_experts, ep_size = 4 MPI ranks", "choose a multiple of ep_size"});
  expect_rejected({"--experts", "2"}, 4, {"config error in --experts: is 2, allowed range [4, "});
  expect_rejected({"--top-k", "40"}, 4, {"config error in --top-k: is 40, allowed range [1, 32]",
                                         "change --top-k to an allowed value; epg-demo --help lists every option"});
  expect_rejected({"--top-k", "16", "--experts", "8"}, 2,
                  {"config error in --top-k: is 16, allowed range [1, 8] (cannot pick more experts than exist)"});
  expect_rejected({"--top-k", "0"}, 2, {"config error in --top-k: is 0"});
  expect_rejected({"--hidden", "0"}, 2, {"config error in --hidden: is 0"});
  expect_rejected({"--ctas", "0"}, 2, {"config error in --ctas: is 0"});
  expect_rejected({"--threads", "100"}, 2, {"config error in --threads: is 100, not a multiple of 32"});
  expect_rejected({"--threads", "1024"}, 2, {"config error in --threads: is 1024, allowed range [64, 512]"});
  expect_rejected({"--deadline", "2e6"}, 2, {"config error in --deadline: is 2e+06"});
  expect_rejected({}, 65, {"config error in the rank count (mpirun -np): is 65, allowed range [1, 64]",
                             "run on fewer ranks: mpirun -np N with N <= 64"});
  expect_rejected({"--inject-stall", "4:1"}, 4,
                  {"config error in --inject-stall: rank 4 is not one of the 4 MPI ranks", "use a RANK in [0, 4)"});
  expect_rejected({"--inject-stall", "-1:1"}, 4, {"--inject-stall: rank -1 is not one of the 4 MPI ranks"});
  expect_rejected({"--domain-size", "3"}, 4, {"config error in --domain-size: is 3, which does not divide ep_size 4",
                                              "session field domain_size, ep_size = 4 MPI ranks"});
  expect_rejected({"--domain-size", "8"}, 4, {"config error in --domain-size: is 8, allowed range [0, 4]"});
}

TEST(DemoOptions, ValidateAcceptsWhatTheSessionAccepts) {
  const auto o = demo::parse_options({});
  ASSERT_TRUE(o);
  for (int ranks : {1, 2, 4, 8, 64}) EXPECT_NO_THROW(demo::validate(*o, ranks)) << ranks;  // 256 experts
  expect_rejected({}, 3, {"--experts: is 256, not divisible by ep_size 3"});
  EXPECT_NO_THROW(demo::validate(*demo::parse_options({"--experts", "6", "--top-k", "6", "--inject-stall", "2:0"}), 3));
}

TEST(DemoOptions, SessionConfigCarriesTheOptions) {
  auto o = demo::parse_options({"--tokens", "64", "--ctas", "32", "--threads", "256", "--deadline", "5",
                                 "--domain-size", "2", "--remote-ctas", "17"});
  ASSERT_TRUE(o);
  o->problem.ep_size = 4;
  const comm::ep_config c = demo::session_config(*o);
  EXPECT_EQ(c.ep_size, 4);
  EXPECT_EQ(c.domain_size, 2);
  EXPECT_EQ(c.max_tokens_per_rank, 64);
  EXPECT_EQ(c.num_ctas, 32);
  EXPECT_EQ(c.threads_per_cta, 256);
  EXPECT_EQ(c.deadline_seconds, 5.0);
  EXPECT_EQ(c.remote_ctas, 17);
  EXPECT_NO_THROW(comm::validate(c));
}
