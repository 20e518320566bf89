#include <gtest/gtest.h>

#include "epgraph/graph/step.hpp"

using namespace epgraph::graph;

namespace {
// Recording fake: every node appends its name when enqueued.
struct recorder {
  std::vector<std::string> calls;
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
    p.prepare_combine = make("prepare-combine");
    p.combine = make("combine");
    p.expert_output_in_workspace = zero_copy;
    return p;
  }
};
}  // namespace

TEST(Scheduler, ZeroCopySkipsPrepareCombine) {
  recorder r;
  auto plan = schedule(r.parts(true, true));
  EXPECT_FALSE(plan.prepare_combine);
  ASSERT_EQ(enqueue(plan, nullptr), cudaSuccess);
  EXPECT_EQ(r.calls, (std::vector<std::string>{"dispatch", "summarize", "experts", "combine"}));
  EXPECT_NE(plan.decision.find("skipped"), std::string::npos);
}

TEST(Scheduler, StagedOutputInsertsPrepareCombineBeforeCombine) {
  recorder r;
  auto plan = schedule(r.parts(false, false));
  EXPECT_TRUE(plan.prepare_combine);
  ASSERT_EQ(enqueue(plan, nullptr), cudaSuccess);
  EXPECT_EQ(r.calls, (std::vector<std::string>{"dispatch", "experts", "prepare-combine", "combine"}));
  EXPECT_NE(plan.decision.find("inserted"), std::string::npos);
}

TEST(Scheduler, ExplainListsNodesInOrder) {
  recorder r;
  auto text = schedule(r.parts(false, true)).explain();
  EXPECT_EQ(text,
            "prepare-combine: inserted (expert output lies outside the workspace combine region)\n"
            "  0. dispatch\n  1. summarize\n  2. experts\n  3. prepare-combine\n  4. combine\n");
  EXPECT_TRUE(r.calls.empty());  // explaining is a dry run
}

TEST(Scheduler, EnqueueStopsAtFirstFailureAndNamesTheNode) {
  recorder r;
  auto parts = r.parts(true, false);
  parts.experts = r.make("experts", cudaErrorInvalidValue);
  auto plan = schedule(std::move(parts));
  std::string failed;
  EXPECT_EQ(enqueue(plan, nullptr, &failed), cudaErrorInvalidValue);
  EXPECT_EQ(failed, "experts");
  EXPECT_EQ(r.calls, (std::vector<std::string>{"dispatch", "experts"}));
}

TEST(Scheduler, ThrowingUserNodeBecomesAnErrorNotAnException) {
  step_parts p;
  p.dispatch = {"dispatch", [](cudaStream_t) { return cudaSuccess; }};
  p.experts = {"experts", [](cudaStream_t) -> cudaError_t { throw std::runtime_error("user bug"); }};
  p.combine = {"combine", [](cudaStream_t) { return cudaSuccess; }};
  p.expert_output_in_workspace = true;
  auto plan = schedule(std::move(p));
  std::string failed;
  EXPECT_EQ(enqueue(plan, nullptr, &failed), cudaErrorUnknown);
  EXPECT_EQ(failed, "experts");
}
