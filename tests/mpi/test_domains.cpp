// Several NVLink domains on one machine: the EP group split into domains of L ranks (4 GPUs
// as 2 x 2 or 4 x 1), every L that divides the world in one run. The results must equal the
// host reference exactly, i.e. the one-domain result for the same routing; the rows of other
// domains travel by NCCL point-to-point.
#include <gtest/gtest.h>
#include <nccl_device/core.h>  // ncclTeamLsa (host)

#include <chrono>
#include <cstdio>
#include <optional>
#include <string>

#include "epgraph/comm/device_buffer.hpp"
#include "epgraph/comm/error.hpp"
#include "epgraph/graph/step.hpp"
#include "epgraph/kernels/ops.hpp"
#include "epgraph/sim/device.hpp"
#include "epgraph/sim/reference.hpp"
#include "setup_exchange.hpp"  // the test hook that stalls one rank
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

// `steps` steps of one plan (zero copy or staged), each checked against the reference;
// remote_ctas: ep_config::remote_ctas.
void run_steps(const sim::problem& p, bool zero_copy, std::uint64_t steps, bool graph_replay, int remote_ctas = 0) {
  comm::ep_config cfg = sim::make_config(p, 24, 256);
  cfg.remote_ctas = remote_ctas;
  comm::ep_session session(world_comm(), cfg);
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

// One session for the failure tests: L ranks per domain, small rows, at least 8 tokens per
// rank, a zero-copy step with `experts` (default: the reference stage), and its stream.
struct failure_rig {
  sim::problem p;
  comm::ep_session session;
  sim::batch_storage buffers;
  graph::step_plan plan;
  graph::stream s;

  failure_rig(int L, double deadline_seconds, graph::expert_stage experts = {})
      : p(problem_of(L)), session(world_comm(), config_of(p, deadline_seconds)), buffers(p),
        plan(graph::plan_step(session, spec(std::move(experts)))) {}

  /// Step `k`'s batch, then the step (eager, or `graph` replayed).
  cudaError_t step(std::uint64_t k, const graph::step_graph* graph = nullptr) {
    const cudaError_t generated = sim::generate_batch(p, mpi().rank(), k, buffers.inputs(), s.get());
    if (generated != cudaSuccess) return generated;
    return graph ? graph->replay(s) : graph::enqueue(plan, s.get());
  }

 private:
  static sim::problem problem_of(int L) {
    sim::problem p = shape(L, sim::routing::uniform, comm::element_type::bf16, 512, 8);
    p.min_tokens = 8;
    return p;
  }
  static comm::ep_config config_of(const sim::problem& p, double deadline_seconds) {
    comm::ep_config cfg = sim::make_config(p, 16, 256);
    cfg.deadline_seconds = deadline_seconds;
    return cfg;
  }
  graph::step_spec spec(graph::expert_stage experts) {
    graph::step_spec out;
    out.dispatch = buffers.dispatch_args();
    out.combine = buffers.combine_args();
    out.experts = experts ? std::move(experts) : sim::reference_expert_stage(p);
    out.expert_output = session.combine_region();
    return out;
  }
};

// check_faults()'s message on this rank ("" when it did not throw).
std::string fault_text(comm::ep_session& session) {
  try {
    session.check_faults();
  } catch (const comm::error& e) {
    return e.what();
  }
  return {};
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

// The exchanges on a communicator of their own CTA count (ep_config::remote_ctas; the other
// tests run the default, NCCL's choice): the fewest and the most NCCL has, with megabyte slabs
// in captured graphs and eager skewed steps.
TEST(Domains, ExchangesOnAGivenCtaCountGiveTheReferenceResult) {
  for (int L : domain_sizes()) {
    if (L == mpi().size()) continue;
    for (int ctas : {1, comm::max_remote_ctas}) {
      SCOPED_TRACE("domain size " + std::to_string(L) + ", remote_ctas " + std::to_string(ctas));
      sim::problem p = shape(L, sim::routing::uniform, comm::element_type::bf16, 7168, 8);
      p.max_tokens = 256;
      run_steps(p, true, 10, true, ctas);
      run_steps(shape(L, sim::routing::skewed, comm::element_type::bf16, 1024, 8), false, 3, false, ctas);
    }
  }
}

// A failing expert stage on the last rank, which is in another domain than rank 0: its
// stopped word travels with the combine rows, and every rank fails together.
TEST(Domains, AFailingExpertStageInAnotherDomainFailsEveryRank) {
  const int last = mpi().size() - 1;
  bool fail = false;
  const sim::problem p = shape(1, sim::routing::uniform, comm::element_type::bf16, 512, 8);
  const auto experts = sim::reference_expert_stage(p);
  failure_rig rig(1, 20, [&](const graph::expert_stage_io& io, cudaStream_t st) {
    return fail ? cudaErrorInvalidValue : experts(io, st);
  });
  ASSERT_EQ(rig.step(0), cudaSuccess);
  rig.s.sync();
  fail = mpi().rank() == last;
  (void)rig.step(1);
  rig.s.sync();
  const std::string text = fault_text(rig.session);
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
  failure_rig rig(2, 20);
  kernels::stage_failure_op fail(rig.session);
  ASSERT_EQ(rig.step(0), cudaSuccess);
  if (mpi().rank() == 1) {
    ASSERT_EQ(fail.run(rig.s.get(), 7), cudaSuccess);
  }
  (void)rig.step(1);
  rig.s.sync();
  const std::string text = fault_text(rig.session);
  EXPECT_TRUE(all_ok(!text.empty())) << "a rank got no error";
  if (mpi().rank() >= 2) {
    EXPECT_NE(text.find("rank " + std::to_string(mpi().rank()) + ": peer stopped: rank 0"), std::string::npos) << text;
  }
}

// The last rank skips one step (it never launches it) while every other rank runs it: the
// ranks of other domains wait in NCCL's exchange, which has no deadline of its own. Each rank's
// exchange guard ends the wait after the agreements' time (2 x deadline + 1 s), revoking its
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
      failure_rig rig(L, 1);  // the guard waits 3 s
      std::optional<graph::step_graph> captured;  // destroyed before the session (NCCL waits for it)
      if (replay) captured.emplace(rig.plan, rig.s);
      const graph::step_graph* g = captured ? &*captured : nullptr;
      ASSERT_EQ(rig.step(0, g), cudaSuccess);
      rig.s.sync();
      const auto start = std::chrono::steady_clock::now();
      if (mpi().rank() != late) {
        ASSERT_EQ(rig.step(1, g), cudaSuccess);
      }
      rig.s.sync();
      const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      const std::string text = fault_text(rig.session);
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
      EXPECT_TRUE(rig.session.failed());
      EXPECT_EQ(rig.step(2, g), cudaErrorNotPermitted);
    }
  }
}

// The last rank skips the session's first step. NCCL would connect the exchanges' peers in that
// step's ncclGroupEnd, holding the other ranks' host threads until the late rank connects too;
// the session connects them at setup instead, so the others' enqueue returns at once and their
// guard ends the exchange at its deadline.
TEST(Domains, ARankThatSkipsTheFirstStepHoldsNoOtherRanksHostThread) {
  if (mpi().size() < 2) GTEST_SKIP() << "needs 2 domains";
  const int late = mpi().size() - 1;
  for (const int L : domain_sizes()) {
    if (L == mpi().size()) continue;
    SCOPED_TRACE("L " + std::to_string(L));
    failure_rig rig(L, 1);  // the guard waits 3 s
    const auto start = std::chrono::steady_clock::now();
    if (mpi().rank() != late) {
      ASSERT_EQ(rig.step(0), cudaSuccess);
    }
    const double enqueued = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    rig.s.sync();
    const std::string text = fault_text(rig.session);
    EXPECT_LT(enqueued, 2.0) << "the host thread waited inside the step's enqueue";
    EXPECT_TRUE(all_ok(!text.empty())) << "a rank got no error";
    EXPECT_NE(text.find("rank 0: an exchange with other NVLink domains timed out: still waiting for rank"),
              std::string::npos) << text;
    EXPECT_NE(text.find(" in the exchange of dispatch #1 (3 s;"), std::string::npos) << text;
    EXPECT_TRUE(rig.session.failed());
  }
}

// The last rank runs one combine the others do not run: one combine more after a step, or (misuse)
// a combine before any dispatch. Its combine exchange waits for ranks that never post theirs; its
// guard sees the exchange's mark (a constant, so also before any dispatch) and ends the wait by
// its deadline; every rank then gets the error, which names the exchange by `where`.
namespace {
void expect_a_lone_combine_to_end_by_the_deadline(bool after_a_step, const std::string& where) {
  const int lone = mpi().size() - 1;
  for (const int L : domain_sizes()) {
    if (L == mpi().size()) continue;
    SCOPED_TRACE("L " + std::to_string(L));
    failure_rig rig(L, 1);  // the guard waits 3 s
    const kernels::combine_op combine(rig.session, rig.buffers.combine_args());
    if (after_a_step) {
      ASSERT_EQ(rig.step(0), cudaSuccess);
      rig.s.sync();
    }
    const auto start = std::chrono::steady_clock::now();
    if (mpi().rank() == lone) {
      ASSERT_EQ(combine.run(rig.s.get()), cudaSuccess);
    }
    rig.s.sync();
    const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const std::string text = fault_text(rig.session);
    EXPECT_TRUE(all_ok(!text.empty())) << "a rank got no error";
    EXPECT_NE(text.find("rank " + std::to_string(lone) + ": an exchange with other NVLink domains timed out"),
              std::string::npos) << text;
    EXPECT_NE(text.find(where), std::string::npos) << text;
    if (mpi().rank() == lone) {
      EXPECT_GT(waited, 2.5) << "the guard fired before its time";
      EXPECT_LT(waited, 30.0);
    }
    EXPECT_TRUE(rig.session.failed());
  }
}
}  // namespace

TEST(Domains, AnExtraCombineEndsItsExchangeByTheDeadline) {
  if (mpi().size() < 2) GTEST_SKIP() << "needs 2 domains";
  expect_a_lone_combine_to_end_by_the_deadline(true, " in the combine exchange after dispatch #1 (");
}

TEST(Domains, ACombineBeforeAnyDispatchEndsItsExchangeByTheDeadline) {
  if (mpi().size() < 2) GTEST_SKIP() << "needs 2 domains";
  expect_a_lone_combine_to_end_by_the_deadline(false, " in the combine exchange before any dispatch (");
}

// A rank of another domain that stalls right before the setup exchange (a test hook holds it
// there for longer than the others could wait): NCCL would hold the others in the exchange's
// connection or kernel for ever; their deadline revokes the exchange communicator, and their
// session creation ends long before the stalled rank comes back, naming the setup exchange.
// The stalled rank then fails its creation too.
TEST(Domains, ARankThatStallsBeforeTheSetupExchangeFailsEveryRanksCreation) {
  if (mpi().size() < 2) GTEST_SKIP() << "needs 2 domains";
  const int stalled = mpi().size() - 1;
  sim::problem p = shape(1, sim::routing::uniform, comm::element_type::bf16, 512, 8);
  comm::ep_config cfg = sim::make_config(p, 16, 256);
  cfg.deadline_seconds = 1;  // the setup exchange and each agreement wait 2 x (2 x 1 + 1) = 6 s
  struct stall_one_rank {  // the hook is reset however the test ends
    explicit stall_one_rank(int rank) {
      comm::detail::setup_stall().seconds = 25;
      comm::detail::setup_stall().rank = rank;
    }
    ~stall_one_rank() { comm::detail::setup_stall().rank = -1; }
  };
  const auto start = std::chrono::steady_clock::now();
  std::string text;
  {
    const stall_one_rank hook(stalled);
    try {
      comm::ep_session session(world_comm(), cfg);
    } catch (const std::exception& e) {
      text = e.what();
    }
  }
  const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (mpi().rank() != stalled) {
    EXPECT_NE(text.find("not every rank of another domain took part in the setup exchange within 6 s"),
              std::string::npos)
        << text;
    EXPECT_LT(waited, 20.0) << "ended only when the stalled rank came back: " << text;
  } else {
    EXPECT_FALSE(text.empty()) << "the stalled rank's creation succeeded without its peers";
    std::fprintf(stderr, "stalled rank %d: creation failed after %.1f s (25 s of them stalled): %s\n", stalled, waited,
                 text.c_str());
  }
  mpi().barrier();
}

// With several domains the host agreements run over NCCL on the session's own communicator.
// The last rank skips one (a barrier) and aborts its session: the others' agreement ends at
// its deadline, revoking their own communicator, the sessions are destroyed, and the caller's
// communicator still runs a collective correctly on every rank (an unfinished all-gather left
// on it, as before this communicator existed, would pair with that all-reduce).
TEST(Domains, AMissedAgreementLeavesTheCallersCommunicatorUsable) {
  if (mpi().size() < 2) GTEST_SKIP() << "needs 2 domains";
  const int late = mpi().size() - 1;
  {
    failure_rig rig(1, 1);  // agreements wait 2 x (2 x 1 + 1) = 6 s
    ASSERT_EQ(rig.step(0), cudaSuccess);
    rig.s.sync();
    std::string text;
    if (mpi().rank() != late) {
      try {
        rig.session.barrier();
      } catch (const comm::error& e) {
        text = e.what();
      }
      // At its deadline (revoking its own communicator), or earlier: a peer that revoked first can
      // end this rank's all-gather with the peer's half missing, which the agreement's name check
      // catches.
      const bool at_deadline = text.find("not every rank reached 'barrier' (over NCCL) within 6 s") != std::string::npos &&
                               text.find("the communicator you passed is untouched") != std::string::npos;
      const bool peer_gave_up = text.find("is not in 'barrier' (it is in another host agreement, or it gave up") !=
                                std::string::npos;
      EXPECT_TRUE(at_deadline || peer_gave_up) << text;
    }
    if (mpi().rank() == late) rig.session.abort();  // leaves: its teardown waits for nobody
    mpi().barrier();
  }
  comm::device_buffer sum(sizeof(std::int64_t));
  const std::int64_t mine = mpi().rank() + 1;
  graph::stream s;
  EPG_CHECK_CUDA(cudaMemcpyAsync(sum.get(), &mine, sizeof mine, cudaMemcpyHostToDevice, s.get()));
  ASSERT_EQ(ncclAllReduce(sum.get(), sum.get(), 1, ncclInt64, ncclSum, world_comm().get(), s.get()), ncclSuccess);
  std::int64_t total = 0;
  EPG_CHECK_CUDA(cudaMemcpyAsync(&total, sum.get(), sizeof total, cudaMemcpyDeviceToHost, s.get()));
  s.sync();
  const std::int64_t n = mpi().size();
  EXPECT_EQ(total, n * (n + 1) / 2);
}

// domain_size 0 is the NVLink (LSA) team NCCL finds for the EP communicator: the session
// reports the size it resolved, and one node's ranks are one domain without any exchange.
TEST(Domains, DomainSizeZeroIsTheNvlinkTeam) {
  const int team = ncclTeamLsa(world_comm().get()).nRanks;
  sim::problem p = shape(0, sim::routing::uniform, comm::element_type::bf16, 512, 8);
  comm::ep_session session(world_comm(), sim::make_config(p, 16, 256));
  EXPECT_EQ(session.config().domain_size, team);
  EXPECT_EQ(session.view().domain_size, team);
  EXPECT_EQ(session.remote_comm() != nullptr, team < mpi().size());
  EXPECT_NO_THROW(session.barrier());
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
