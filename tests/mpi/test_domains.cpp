// Several NVLink domains on one machine: the EP group split into domains of L ranks (4 GPUs
// as 2 x 2 or 4 x 1), every L that divides the world in one run. The results must equal the
// host reference exactly, i.e. the one-domain result for the same routing; the rows of other
// domains travel by NCCL point-to-point.
#include <gtest/gtest.h>

#include <chrono>
#include <optional>
#include <string>

#include "epgraph/comm/device_buffer.hpp"
#include "epgraph/comm/error.hpp"
#include "epgraph/graph/step.hpp"
#include "epgraph/kernels/ops.hpp"
#include "epgraph/sim/device.hpp"
#include "epgraph/sim/reference.hpp"
#include "world.hpp"

using namespace epgraph;
using mpitest::all_ok;
using mpitest::mpi;
using mpitest::world_comm;

namespace {

std::vector<int> domain_sizes() {
  std::vector<int> out;
  for (int L = 1; L <= mpi().size(); ++L)
    if (mpi().size() % L == 0) out.push_back(L);
  return out;
}

sim::problem shape(int L, sim::routing dist, comm::element_type dtype, int hidden, int top_k) {
  sim::problem p;
  p.ep_size = mpi().size();
  p.domain_size = L;
  p.max_tokens = 96;
  p.top_k = top_k;
  p.num_experts = 16 * mpi().size();
  p.hidden = hidden;
  p.dtype = dtype;
  p.dist = dist;
  p.seed = 9000;  // the same routing at every domain size: each must give the one reference result
  return p;
}

// `steps` steps of one plan (zero copy or staged), each checked against the reference.
void run_steps(const sim::problem& p, bool zero_copy, std::uint64_t steps, bool graph_replay) {
  comm::ep_session session(world_comm(), sim::make_config(p, 24, 256));
  ASSERT_EQ(session.view().domain_size, p.domain_size);
  ASSERT_EQ(session.remote_comm() != nullptr, p.domain_size < p.ep_size);
  sim::batch_storage buffers(p);
  const std::size_t elem = comm::element_size(p.dtype);
  comm::device_buffer staged(zero_copy ? 0 : std::size_t(p.ep_size) * p.max_tokens * p.hidden * elem);
  graph::step_spec spec;
  spec.dispatch = buffers.dispatch_args();
  spec.combine = buffers.combine_args();
  spec.experts = sim::reference_expert_stage(p);
  spec.expert_output = zero_copy ? session.combine_region() : staged.get();
  const graph::step_plan plan = graph::plan_step(session, spec);
  graph::stream s;
  std::optional<graph::step_graph> captured;
  if (graph_replay) captured.emplace(plan, s);
  long long wrong_steps = 0;
  for (std::uint64_t k = 0; k < steps; ++k) {
    ASSERT_EQ(sim::generate_batch(p, mpi().rank(), k, buffers.inputs(), s.get()), cudaSuccess);
    if (captured) ASSERT_EQ(captured->replay(s), cudaSuccess);
    else ASSERT_EQ(graph::enqueue(plan, s.get()), cudaSuccess);
    s.sync();
    const int T = sim::token_count(p, mpi().rank(), k);
    std::vector<std::uint8_t> host(std::size_t(T) * p.hidden * elem);
    EPG_CHECK_CUDA(cudaMemcpy(host.data(), buffers.output(), host.size(), cudaMemcpyDeviceToHost));
    const long long wrong = sim::count_wrong(p, k, mpi().rank(), host.data());
    wrong_steps += wrong != 0;
    if (wrong && wrong_steps < 3) ADD_FAILURE() << "step " << k << ": " << wrong << " wrong elements (T=" << T << ")";
  }
  EXPECT_EQ(wrong_steps, 0) << (zero_copy ? "zero copy" : "staged");
  EXPECT_NO_THROW(session.check_faults());
}

}  // namespace

TEST(Domains, EveryDomainSizeGivesTheReferenceResult) {
  for (int L : domain_sizes()) {
    for (auto dist : {sim::routing::uniform, sim::routing::skewed, sim::routing::one_rank}) {
      SCOPED_TRACE("domain size " + std::to_string(L) + ", routing " + std::to_string(static_cast<int>(dist)));
      for (bool zero_copy : {true, false}) run_steps(shape(L, dist, comm::element_type::bf16, 1024, 8), zero_copy, 3, false);
    }
  }
}

TEST(Domains, OtherElementTypesAndTopK) {
  for (int L : domain_sizes()) {
    SCOPED_TRACE("domain size " + std::to_string(L));
    run_steps(shape(L, sim::routing::uniform, comm::element_type::fp32, 1000, 4), true, 2, false);  // scalar path
    run_steps(shape(L, sim::routing::uniform, comm::element_type::fp16, 2048, 16), false, 2, false);
    run_steps(shape(L, sim::routing::skewed, comm::element_type::bf16, 512, 1), true, 2, false);
  }
}

// Back-to-back replays of one captured graph with skewed routing and fresh batch sizes: no
// buffer of either side (LSA or NCCL) is overwritten while a peer still reads it.
TEST(Domains, ThousandBackToBackReplaysUnderSkewedRouting) {
  for (int L : domain_sizes()) {
    if (L == mpi().size()) continue;  // one domain: StepGraph.ThousandReplays* covers it
    SCOPED_TRACE("domain size " + std::to_string(L));
    for (bool zero_copy : {true, false}) run_steps(shape(L, sim::routing::skewed, comm::element_type::bf16, 512, 8), zero_copy, 500, true);
  }
}

// Slabs of megabytes inside captured graphs: NCCL registers the buffers of graph-captured
// send/recv above a size (the small shapes above stay under it). epg-bench hung here when the
// staging was cudaMalloc'd memory NCCL could not register (docs/domains.md).
TEST(Domains, MegabyteSlabsInCapturedGraphs) {
  for (int L : domain_sizes()) {
    if (L == mpi().size()) continue;
    SCOPED_TRACE("domain size " + std::to_string(L));
    sim::problem p = shape(L, sim::routing::uniform, comm::element_type::bf16, 7168, 8);
    p.max_tokens = 256;  // 3.7 MB of hidden rows per remote rank and step
    for (bool zero_copy : {true, false}) run_steps(p, zero_copy, 20, true);
  }
}

// A failing expert stage on the last rank, which is in another domain than rank 0: its
// stopped word travels with the combine rows, and every rank fails together.
TEST(Domains, AFailingExpertStageInAnotherDomainFailsEveryRank) {
  const int last = mpi().size() - 1;
  sim::problem p = shape(1, sim::routing::uniform, comm::element_type::bf16, 512, 8);
  p.min_tokens = 8;
  comm::ep_config cfg = sim::make_config(p, 16, 256);
  cfg.deadline_seconds = 20;
  comm::ep_session session(world_comm(), cfg);
  sim::batch_storage buffers(p);
  bool fail = false;
  graph::step_spec spec;
  spec.dispatch = buffers.dispatch_args();
  spec.combine = buffers.combine_args();
  const auto experts = sim::reference_expert_stage(p);
  spec.experts = [&](const graph::expert_stage_io& io, cudaStream_t st) {
    return fail ? cudaErrorInvalidValue : experts(io, st);
  };
  spec.expert_output = session.combine_region();
  const graph::step_plan plan = graph::plan_step(session, spec);
  graph::stream s;
  ASSERT_EQ(sim::generate_batch(p, mpi().rank(), 0, buffers.inputs(), s.get()), cudaSuccess);
  ASSERT_EQ(graph::enqueue(plan, s.get()), cudaSuccess);
  s.sync();
  fail = mpi().rank() == last;
  ASSERT_EQ(sim::generate_batch(p, mpi().rank(), 1, buffers.inputs(), s.get()), cudaSuccess);
  (void)graph::enqueue(plan, s.get());
  s.sync();
  std::string text;
  try {
    session.check_faults();
  } catch (const comm::error& e) {
    text = e.what();
  }
  EXPECT_TRUE(all_ok(!text.empty())) << "a rank got no error";
  EXPECT_NE(text.find("rank " + std::to_string(last) + ": a step node failed on this rank"), std::string::npos) << text;
  if (mpi().rank() != last) {
    EXPECT_NE(text.find("peer stopped: rank " + std::to_string(last)), std::string::npos) << text;
  }
}

// 2 x 2: rank 1 has a fatal fault of its own before a step, so its dispatch is refused and
// stops its domain peer, rank 0, at the dispatch barrier. Rank 0's dispatch then marks its
// word stopped, and the other domain learns it from rank 0's rows (not only from rank 1's).
TEST(Domains, ADispatchStoppedAtItsBarrierTellsTheOtherDomain) {
  if (mpi().size() != 4) GTEST_SKIP() << "needs 4 ranks (2 x 2)";
  sim::problem p = shape(2, sim::routing::uniform, comm::element_type::bf16, 512, 8);
  p.min_tokens = 8;
  comm::ep_config cfg = sim::make_config(p, 16, 256);
  cfg.deadline_seconds = 20;
  comm::ep_session session(world_comm(), cfg);
  sim::batch_storage buffers(p);
  graph::step_spec spec;
  spec.dispatch = buffers.dispatch_args();
  spec.combine = buffers.combine_args();
  spec.experts = sim::reference_expert_stage(p);
  spec.expert_output = session.combine_region();
  const graph::step_plan plan = graph::plan_step(session, spec);
  kernels::stage_failure_op fail(session);
  graph::stream s;
  ASSERT_EQ(sim::generate_batch(p, mpi().rank(), 0, buffers.inputs(), s.get()), cudaSuccess);
  ASSERT_EQ(graph::enqueue(plan, s.get()), cudaSuccess);
  if (mpi().rank() == 1) {
    ASSERT_EQ(fail.run(s.get(), 7), cudaSuccess);
  }
  ASSERT_EQ(sim::generate_batch(p, mpi().rank(), 1, buffers.inputs(), s.get()), cudaSuccess);
  (void)graph::enqueue(plan, s.get());
  s.sync();
  std::string text;
  try {
    session.check_faults();
  } catch (const comm::error& e) {
    text = e.what();
  }
  EXPECT_TRUE(all_ok(!text.empty())) << "a rank got no error";
  if (mpi().rank() >= 2) {
    EXPECT_NE(text.find("rank " + std::to_string(mpi().rank()) + ": peer stopped: rank 0"), std::string::npos) << text;
  }
}

// The last rank skips one step (it never launches it) while every other rank runs it: the
// ranks of other domains wait in NCCL's exchange, which has no deadline of its own. Each rank's
// exchange guard ends the wait after the agreements' time (2 x deadline + 1 s), aborting its
// communicator between domains; every rank then gets an error, no rank hangs, and the session
// refuses to run again. Eager steps and a replayed graph. The skipping rank goes straight to
// check_faults: its agreement outwaits the guard of the ranks that are stuck.
TEST(Domains, ARankThatSkipsAStepEndsTheOtherDomainsExchangesByTheDeadline) {
  if (mpi().size() < 2) GTEST_SKIP() << "needs 2 domains";
  const int late = mpi().size() - 1;
  for (const int L : domain_sizes()) {
    if (L == mpi().size()) continue;
    for (const bool replay : {false, true}) {
      SCOPED_TRACE("L " + std::to_string(L) + (replay ? ", graph" : ", eager"));
      sim::problem p = shape(L, sim::routing::uniform, comm::element_type::bf16, 512, 8);
      p.min_tokens = 8;
      comm::ep_config cfg = sim::make_config(p, 16, 256);
      cfg.deadline_seconds = 1;  // the guard waits 3 s
      comm::ep_session session(world_comm(), cfg);
      sim::batch_storage buffers(p);
      graph::step_spec spec;
      spec.dispatch = buffers.dispatch_args();
      spec.combine = buffers.combine_args();
      spec.experts = sim::reference_expert_stage(p);
      spec.expert_output = session.combine_region();
      const graph::step_plan plan = graph::plan_step(session, spec);
      graph::stream s;
      std::optional<graph::step_graph> captured;  // destroyed before the session (NCCL waits for it)
      if (replay) captured.emplace(plan, s);
      const auto launch = [&] { return captured ? captured->replay(s) : graph::enqueue(plan, s.get()); };
      ASSERT_EQ(sim::generate_batch(p, mpi().rank(), 0, buffers.inputs(), s.get()), cudaSuccess);
      ASSERT_EQ(launch(), cudaSuccess);
      s.sync();
      const auto start = std::chrono::steady_clock::now();
      if (mpi().rank() != late) {
        ASSERT_EQ(sim::generate_batch(p, mpi().rank(), 1, buffers.inputs(), s.get()), cudaSuccess);
        ASSERT_EQ(launch(), cudaSuccess);
      }
      s.sync();
      const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      std::string text;
      try {
        session.check_faults();
      } catch (const comm::error& e) {
        text = e.what();
      }
      EXPECT_TRUE(all_ok(!text.empty())) << "a rank got no error";
      // Rank 0 is in another domain than the late rank: its guard fired, naming the late rank.
      const std::string head = "rank 0: an exchange with other NVLink domains timed out: still waiting for rank";
      const std::size_t at = text.find(head);
      ASSERT_NE(at, std::string::npos) << text;
      const std::string named = text.substr(at + head.size(), text.find(" in the exchange of dispatch #3", at) - at - head.size());
      EXPECT_NE(named.find(std::to_string(late)), std::string::npos) << text;
      EXPECT_NE(text.find(" in the exchange of dispatch #3 (3 s;"), std::string::npos) << text;
      if (mpi().rank() == 0) {
        EXPECT_GT(waited, 2.5) << "the guard fired before its time";
        EXPECT_LT(waited, 30.0);
      }
      EXPECT_TRUE(session.failed());
      EXPECT_EQ(launch(), cudaErrorNotPermitted);
    }
  }
}

// The last rank launches one combine more than the others after a step: its combine exchange
// waits for ranks that never post theirs. Its guard sees the exchange's mark (no dispatch
// came before it) and ends the wait; every rank then gets the error.
TEST(Domains, AnExtraCombineEndsItsExchangeByTheDeadline) {
  if (mpi().size() < 2) GTEST_SKIP() << "needs 2 domains";
  const int late = mpi().size() - 1;
  for (const int L : domain_sizes()) {
    if (L == mpi().size()) continue;
    SCOPED_TRACE("L " + std::to_string(L));
    sim::problem p = shape(L, sim::routing::uniform, comm::element_type::bf16, 512, 8);
    p.min_tokens = 8;
    comm::ep_config cfg = sim::make_config(p, 16, 256);
    cfg.deadline_seconds = 1;
    comm::ep_session session(world_comm(), cfg);
    sim::batch_storage buffers(p);
    graph::step_spec spec;
    spec.dispatch = buffers.dispatch_args();
    spec.combine = buffers.combine_args();
    spec.experts = sim::reference_expert_stage(p);
    spec.expert_output = session.combine_region();
    const graph::step_plan plan = graph::plan_step(session, spec);
    const kernels::combine_op extra(session, buffers.combine_args());
    graph::stream s;
    ASSERT_EQ(sim::generate_batch(p, mpi().rank(), 0, buffers.inputs(), s.get()), cudaSuccess);
    ASSERT_EQ(graph::enqueue(plan, s.get()), cudaSuccess);
    s.sync();
    const auto start = std::chrono::steady_clock::now();
    if (mpi().rank() == late) {
      ASSERT_EQ(extra.run(s.get()), cudaSuccess);
    }
    s.sync();
    const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::string text;
    try {
      session.check_faults();
    } catch (const comm::error& e) {
      text = e.what();
    }
    EXPECT_TRUE(all_ok(!text.empty())) << "a rank got no error";
    EXPECT_NE(text.find("rank " + std::to_string(late) + ": an exchange with other NVLink domains timed out"),
              std::string::npos) << text;
    EXPECT_NE(text.find(" in the combine exchange after dispatch #1 ("), std::string::npos) << text;
    if (mpi().rank() == late) {
      EXPECT_GT(waited, 2.5) << "the guard fired before its time";
      EXPECT_LT(waited, 30.0);
    }
    EXPECT_TRUE(session.failed());
  }
}

TEST(Domains, ADomainSizeThatDoesNotDivideTheGroupIsRejectedOnEveryRank) {
  if (mpi().size() < 3) GTEST_SKIP() << "every L divides 2 ranks";
  sim::problem p = shape(0, sim::routing::uniform, comm::element_type::bf16, 512, 8);
  comm::ep_config cfg = sim::make_config(p, 16, 256);
  cfg.domain_size = mpi().size() - 1;
  std::string text;
  try {
    comm::ep_session session(world_comm(), cfg);
  } catch (const comm::error& e) {
    text = e.what();
  }
  EXPECT_NE(text.find("does not divide ep_size"), std::string::npos) << text;
  EXPECT_TRUE(all_ok(!text.empty()));
}
