// One GPU, EP size 1: what a session does when something goes wrong on its own rank: a failing
// step node, abort, a session moved or destroyed under its plans, and the token count combine
// uses. The cross-rank cases are in tests/mpi/test_safety.cpp.
#include <cmath>
#include <cstring>
#include <optional>

#include "single_rank.hpp"

using namespace epgraph;
using namespace epgraph::gputest;

namespace {
// bf16 bits of the output rows [0, rows): true when every element is NaN.
bool all_nan(const std::vector<std::uint16_t>& bits, std::size_t elements) {
  for (std::size_t i = 0; i < elements; ++i)
    if ((bits[i] & 0x7f80u) != 0x7f80u || (bits[i] & 0x7fu) == 0) return false;
  return true;
}

std::vector<std::uint16_t> output_of(const sim::batch_storage& b, const sim::problem& p) {
  std::vector<std::uint16_t> host(std::size_t(p.max_tokens) * p.hidden);
  EPG_CHECK_CUDA(cudaMemcpy(host.data(), b.output(), host.size() * 2, cudaMemcpyDeviceToHost));
  return host;
}
}  // namespace

TEST_F(SingleRank, AFailingExpertStageMarksTheSessionAndCombineWritesNaN) {
  auto nccl = solo_comm();
  auto p = small_problem();
  comm::ep_session session(nccl, sim::make_config(p, 8, 256));
  sim::batch_storage b(p);
  graph::step_spec spec = sim::zero_copy_step(session, b, p);
  spec.experts = [](const graph::expert_stage_io&, cudaStream_t) { return cudaErrorInvalidValue; };
  const auto plan = graph::plan_step(session, spec);
  graph::stream s;
  ASSERT_EQ(sim::generate_batch(p, 0, 3, b.inputs(), s.get()), cudaSuccess);
  std::string failed;
  EXPECT_EQ(graph::enqueue(plan, s.get(), &failed), cudaErrorInvalidValue);
  EXPECT_EQ(failed, "expert stage");
  s.sync();
  const auto f = session.read_faults().fatal;
  EXPECT_EQ(f.code, comm::fault_code::local_stage_failed);
  EXPECT_EQ(f.value, 2);  // dispatch, summarize, expert stage
  // The combine that still ran (to keep peers in step) refused: its rows are NaN, not stale.
  const int T = sim::token_count(p, 0, 3);
  ASSERT_GT(T, 0);
  EXPECT_TRUE(all_nan(output_of(b, p), std::size_t(T) * p.hidden));
  try {
    session.check_faults();
    ADD_FAILURE() << "no error";
  } catch (const comm::error& e) {
    EXPECT_EQ(e.domain(), comm::error_domain::device);
    EXPECT_NE(std::string(e.what()).find("rank 0: a step node failed on this rank: node 2"), std::string::npos)
        << e.what();
  }
  EXPECT_TRUE(session.failed());
  // From now on the host refuses too, and the fault stays.
  EXPECT_EQ(graph::enqueue(plan, s.get()), cudaErrorNotPermitted);
  EXPECT_THROW(session.check_faults(), comm::error);
}

TEST_F(SingleRank, CombineUsesTheTokenCountDispatchRecorded) {
  auto nccl = solo_comm();
  auto p = small_problem();
  comm::ep_session session(nccl, sim::make_config(p, 8, 256));
  sim::batch_storage b(p);
  graph::step_spec spec = sim::zero_copy_step(session, b, p);
  // The expert stage changes the caller's count after dispatch read it.
  const auto experts = sim::reference_expert_stage(p);
  spec.experts = [&](const graph::expert_stage_io& io, cudaStream_t st) {
    const cudaError_t ran = experts(io, st);
    return ran != cudaSuccess ? ran : sim::set_token_count(b.inputs().num_tokens, p.max_tokens, st);
  };
  const auto plan = graph::plan_step(session, spec);
  graph::stream s;
  std::uint64_t step = 0;
  while (sim::token_count(p, 0, step) >= p.max_tokens - 8) ++step;  // a step with rows to spare
  const int T = sim::token_count(p, 0, step);
  ASSERT_EQ(sim::generate_batch(p, 0, step, b.inputs(), s.get()), cudaSuccess);
  EPG_CHECK_CUDA(cudaMemsetAsync(b.output(), 0x55, std::size_t(p.max_tokens) * p.hidden * 2, s.get()));
  ASSERT_EQ(graph::enqueue(plan, s.get()), cudaSuccess);
  s.sync();
  const auto host = output_of(b, p);
  EXPECT_EQ(sim::count_wrong(p, step, 0, host.data()), 0);
  long long touched = 0;
  for (std::size_t i = std::size_t(T) * p.hidden; i < host.size(); ++i) touched += host[i] != 0x5555;
  EXPECT_EQ(touched, 0) << "combine wrote rows past the " << T << " tokens dispatch handled";
}

TEST_F(SingleRank, PlansSurviveAMoveOfTheSessionAndRefuseOnceItIsGone) {
  auto nccl = solo_comm();
  auto p = small_problem();
  std::optional<comm::ep_session> first(std::in_place, nccl, sim::make_config(p, 8, 256));
  sim::batch_storage b(p);
  graph::stream s;
  graph::step_graph step(graph::plan_step(*first, sim::zero_copy_step(*first, b, p)), s);
  kernels::dispatch_op dispatch(*first, b.dispatch_args());
  std::optional<comm::ep_session> moved(std::move(*first));
  first.reset();  // the moved-from object is gone too
  for (std::uint64_t k = 0; k < 3; ++k) {
    ASSERT_EQ(sim::generate_batch(p, 0, k, b.inputs(), s.get()), cudaSuccess);
    ASSERT_EQ(step.replay(s), cudaSuccess);
    s.sync();
    const auto host = output_of(b, p);
    EXPECT_EQ(sim::count_wrong(p, k, 0, host.data()), 0) << "step " << k;
  }
  moved.reset();  // destroyed: the graph and the op must not touch its memory
  EXPECT_EQ(step.replay(s), cudaErrorInvalidResourceHandle);
  EXPECT_EQ(dispatch.run(s.get()), cudaErrorInvalidResourceHandle);
  s.sync();
}

TEST_F(SingleRank, AbortRefusesFurtherRunsOnHostAndDevice) {
  auto nccl = solo_comm();
  auto p = small_problem();
  comm::ep_session session(nccl, sim::make_config(p, 8, 256));
  sim::batch_storage b(p);
  graph::stream s;
  graph::step_graph step(graph::plan_step(session, sim::zero_copy_step(session, b, p)), s);
  session.abort();
  EXPECT_TRUE(session.failed());
  EXPECT_EQ(step.replay(s), cudaErrorNotPermitted);
  EXPECT_EQ(session.read_faults().fatal.code, comm::fault_code::session_left);
  // The captured graph embedded by a runtime bypasses replay(): the device refuses it.
  cudaGraph_t raw = nullptr;
  EPG_CHECK_CUDA(cudaGraphCreate(&raw, 0));
  graph::graph caller = graph::graph::from_native_handle(raw);
  cudaGraphNode_t child = nullptr;
  EPG_CHECK_CUDA(cudaGraphAddChildGraphNode(&child, caller.get(), nullptr, 0, step.get()));
  graph::graph_exec exec = caller.instantiate();
  ASSERT_EQ(sim::generate_batch(p, 0, 1, b.inputs(), s.get()), cudaSuccess);
  ASSERT_EQ(exec.launch(s), cudaSuccess);
  s.sync();
  const int T = sim::token_count(p, 0, 1);
  EXPECT_TRUE(all_nan(output_of(b, p), std::size_t(T) * p.hidden));
  const auto seen = session.peer_progress();
  EXPECT_TRUE(seen[0].stopped);
}
