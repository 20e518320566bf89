#include <gtest/gtest.h>

#include "epgraph/comm/error.hpp"
#include "epgraph/graph/step.hpp"

using namespace epgraph::graph;

namespace {
// Recording fake: every node appends its name when enqueued; the failure marker appends
// "marker:<position>".
struct recorder {
  std::vector<std::string> calls;
  int factory_calls = 0;
  char region = 0, staged = 0;  // stand-ins for the combine region and a buffer of the user's
  node make(const std::string& name, cudaError_t result = cudaSuccess) {
    return {name, [this, name, result](cudaStream_t) {
              calls.push_back(name);
              return result;
            }};
  }
  step_parts parts(bool zero_copy, bool summarize) {
    step_parts p;
    p.dispatch = make("dispatch");
    if (summarize) p.summarize = make("summarize");
    p.experts = make("experts");
    p.prepare_combine = [this] {
      ++factory_calls;
      return make("prepare-combine");
    };
    p.combine = make("combine");
    p.combine_region = &region;
    p.expert_output = zero_copy ? &region : &staged;
    return p;
  }
  step_plan plan(step_parts p) {
    step_plan plan = schedule(std::move(p));
    plan.failure_marker = [this](cudaStream_t, int position) {
      calls.push_back("marker:" + std::to_string(position));
      return cudaSuccess;
    };
    return plan;
  }
};
}  // namespace

TEST(Scheduler, ZeroCopySkipsPrepareCombineWithoutBuildingIt) {
  recorder r;
  auto plan = r.plan(r.parts(true, true));
  EXPECT_FALSE(plan.prepare_combine);
  EXPECT_EQ(r.factory_calls, 0);  // never built, so never validated against the combine region
  ASSERT_EQ(enqueue(plan, nullptr), cudaSuccess);
  EXPECT_EQ(r.calls, (std::vector<std::string>{"dispatch", "summarize", "experts", "combine"}));
  EXPECT_NE(plan.decision.find("skipped"), std::string::npos);
}

TEST(Scheduler, StagedOutputInsertsPrepareCombineBeforeCombine) {
  recorder r;
  auto plan = r.plan(r.parts(false, false));
  EXPECT_TRUE(plan.prepare_combine);
  EXPECT_EQ(r.factory_calls, 1);
  ASSERT_EQ(enqueue(plan, nullptr), cudaSuccess);
  EXPECT_EQ(r.calls, (std::vector<std::string>{"dispatch", "experts", "prepare-combine", "combine"}));
  EXPECT_NE(plan.decision.find("inserted"), std::string::npos);
}

TEST(Scheduler, TheSchedulerMarksDispatchAndCombineCollective) {
  recorder r;
  auto plan = r.plan(r.parts(false, true));
  for (const node& n : plan.nodes)
    EXPECT_EQ(n.collective, n.name == "dispatch" || n.name == "combine") << n.name;
}

TEST(Scheduler, ExplainListsNodesInOrder) {
  recorder r;
  auto text = r.plan(r.parts(false, true)).explain();
  EXPECT_EQ(text,
            "prepare-combine: inserted (expert output lies outside the workspace combine region)\n"
            "  0. dispatch\n  1. summarize\n  2. experts\n  3. prepare-combine\n  4. combine\n");
  EXPECT_TRUE(r.calls.empty());  // explaining is a dry run
}

TEST(Scheduler, AFailingNodeKeepsTheCollectiveSequence) {
  recorder r;
  auto parts = r.parts(false, true);
  parts.experts = r.make("experts", cudaErrorInvalidValue);
  auto plan = r.plan(std::move(parts));
  std::string failed;
  EXPECT_EQ(enqueue(plan, nullptr, &failed), cudaErrorInvalidValue);
  EXPECT_EQ(failed, "experts");
  // Local work after the failure is skipped; combine still launches (after the marker), so the
  // peers' combine is not left waiting for this rank.
  EXPECT_EQ(r.calls, (std::vector<std::string>{"dispatch", "summarize", "experts", "marker:2", "combine"}));
}

TEST(Scheduler, AFailingDispatchStillLaunchesCombineOnce) {
  recorder r;
  auto parts = r.parts(true, false);
  parts.dispatch = r.make("dispatch", cudaErrorLaunchOutOfResources);
  auto plan = r.plan(std::move(parts));
  std::string failed;
  EXPECT_EQ(enqueue(plan, nullptr, &failed), cudaErrorLaunchOutOfResources);
  EXPECT_EQ(failed, "dispatch");
  EXPECT_EQ(r.calls, (std::vector<std::string>{"dispatch", "marker:0", "combine"}));
}

TEST(Scheduler, ThrowingUserNodeBecomesAnErrorNotAnException) {
  recorder r;
  auto parts = r.parts(true, false);
  parts.experts = {"experts", [](cudaStream_t) -> cudaError_t { throw std::runtime_error("user bug"); }};
  auto plan = r.plan(std::move(parts));
  std::string failed;
  EXPECT_EQ(enqueue(plan, nullptr, &failed), cudaErrorUnknown);
  EXPECT_EQ(failed, "experts");
  EXPECT_EQ(r.calls, (std::vector<std::string>{"dispatch", "marker:1", "combine"}));
}

TEST(Scheduler, AnUnlinkedPlanLaunchesAndAgreesLocally) {
  epgraph::comm::session_link unlinked;
  EXPECT_EQ(unlinked.launch_status(), cudaSuccess);
  int ran = 0;
  unlinked.agreed("local", [&] { ++ran; });
  EXPECT_EQ(ran, 1);
  EXPECT_THROW(unlinked.agreed("local", [] { throw std::runtime_error("x"); }), std::runtime_error);
}

// An expert-major stage (step_spec::expert_major; recording fakes here) gets the
// permute after summarize and the weighted un-permute in prepare-combine's place, even when
// the expert output pointer is the combine region; prepare-combine itself is never built.
TEST(Scheduler, AnExpertMajorStageIsPermutedAndUnpermuted) {
  recorder r;
  int unpermute_calls = 0;
  step_parts parts = r.parts(true, true);
  parts.permute = r.make("permute");
  parts.unpermute = [&] {
    ++unpermute_calls;
    return r.make("unpermute");
  };
  auto plan = r.plan(std::move(parts));
  EXPECT_TRUE(plan.prepare_combine);
  EXPECT_EQ(r.factory_calls, 0);
  EXPECT_EQ(unpermute_calls, 1);
  EXPECT_EQ(plan.explain(),
            "prepare-combine: the un-permute (the expert stage writes expert-major rows)\n"
            "  0. dispatch\n  1. summarize\n  2. permute\n  3. experts\n  4. unpermute\n  5. combine\n");
  ASSERT_EQ(enqueue(plan, nullptr), cudaSuccess);
  EXPECT_EQ(r.calls,
            (std::vector<std::string>{"dispatch", "summarize", "permute", "experts", "unpermute", "combine"}));
  for (const node& n : plan.nodes)
    EXPECT_EQ(n.collective, n.name == "dispatch" || n.name == "combine") << n.name;
}

TEST(Scheduler, APermuteWithoutUnpermuteIsRejected) {
  recorder r;
  step_parts half = r.parts(false, false);
  half.permute = r.make("permute");
  EXPECT_THROW(schedule(std::move(half)), epgraph::comm::error);
  step_parts other = r.parts(false, false);
  other.unpermute = [&] { return r.make("unpermute"); };
  try {
    (void)schedule(std::move(other));
    ADD_FAILURE() << "an un-permute without a permute was accepted";
  } catch (const epgraph::comm::error& e) {
    EXPECT_NE(std::string(e.what()).find("step_parts.unpermute: is set without a permute"), std::string::npos)
        << e.what();
  }
}

// A reduced-precision combine (combine_args::precision): prepare-combine reduces the rows, so
// it is always inserted and the decision says how; zero copy and an expert-major stage are
// rejected, naming the field and the precision.
namespace {
void expect_reduced_combine_rules(epgraph::kernels::combine_precision precision, const std::string& decision,
                                  const std::string& name) {
  recorder r;
  step_parts staged = r.parts(false, true);
  staged.combine_precision = precision;
  auto plan = r.plan(std::move(staged));
  EXPECT_TRUE(plan.prepare_combine);
  EXPECT_EQ(r.factory_calls, 1);
  EXPECT_NE(plan.decision.find(decision), std::string::npos) << plan.decision;
  ASSERT_EQ(enqueue(plan, nullptr), cudaSuccess);
  EXPECT_EQ(r.calls, (std::vector<std::string>{"dispatch", "summarize", "experts", "prepare-combine", "combine"}));

  const auto expect_rejected = [](step_parts p, const std::string& fragment) {
    try {
      (void)schedule(std::move(p));
      ADD_FAILURE() << "accepted; expected: " << fragment;
    } catch (const epgraph::comm::error& e) {
      EXPECT_EQ(e.call(), "step_spec.combine.precision");
      EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
    }
  };
  step_parts zero_copy = r.parts(true, true);
  zero_copy.combine_precision = precision;
  expect_rejected(std::move(zero_copy), "is " + name + " but the expert output is the combine region");
  step_parts expert_major = r.parts(false, true);
  expert_major.combine_precision = precision;
  expert_major.permute = r.make("permute");
  expert_major.unpermute = [&] { return r.make("unpermute"); };
  expect_rejected(std::move(expert_major), "is " + name + " beside an expert-major stage");
}
}  // namespace

TEST(Scheduler, AnFp8CombineInsertsTheQuantizingPrepareAndRejectsWhatCannotQuantize) {
  expect_reduced_combine_rules(epgraph::kernels::combine_precision::fp8, "quantizing to FP8", "fp8");
}

// A bf16 combine of fp32 expert output: the same rules, its own decision line and messages.
TEST(Scheduler, ABf16CombineInsertsTheRoundingPrepareAndRejectsZeroCopy) {
  expect_reduced_combine_rules(epgraph::kernels::combine_precision::bf16, "rounding fp32 to bf16", "bf16");
}
