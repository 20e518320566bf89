// Collective safety: one rank misbehaves (an extra dispatch, a skipped combine, a stage that
// fails, planning that fails, a rank that never launches, leaves or unwinds), and every rank
// must end with a clear error, no wrong output accepted as right, and no hang.
#include <gtest/gtest.h>

#include <mpi.h>

#include <chrono>
#include <cstdio>
#include <optional>
#include <thread>

#include "epgraph/comm/device_buffer.hpp"
#include "epgraph/comm/error.hpp"
#include "epgraph/graph/step.hpp"
#include "epgraph/sim/device.hpp"
#include "epgraph/sim/reference.hpp"
#include "world.hpp"

using namespace epgraph;
using mpitest::all_ok;
using mpitest::mpi;
using mpitest::world_comm;

namespace {

using clock_type = std::chrono::steady_clock;
double seconds_since(clock_type::time_point t) { return std::chrono::duration<double>(clock_type::now() - t).count(); }

sim::problem small_problem() {
  sim::problem p;
  p.ep_size = mpi().size();
  p.max_tokens = 64;
  p.top_k = 8;
  p.num_experts = 16 * mpi().size();
  p.hidden = 512;
  p.min_tokens = 8;  // every rank has rows in every step
  p.seed = 4242;
  p.domain_size = mpitest::domain_size();
  return p;
}

// A session, one rank's buffers and a zero-copy step plan, enqueued node by node so that a
// test can make one rank deviate.
struct world {
  sim::problem p = small_problem();
  comm::ep_session session;
  sim::batch_storage b{p};
  graph::stream s;
  graph::step_plan plan;
  bool fail_experts = false;  // this rank's expert stage returns an error while set

  explicit world(double deadline_seconds, int ctas = 16, const sim::problem& shape = small_problem())
      : p(shape), session(world_comm(), config(p, deadline_seconds, ctas)) {
    graph::step_spec spec;
    spec.dispatch = b.dispatch_args();
    spec.combine = b.combine_args();
    const auto experts = sim::reference_expert_stage(p);
    spec.experts = [this, experts](const graph::expert_stage_io& io, cudaStream_t st) {
      return fail_experts ? cudaErrorInvalidValue : experts(io, st);
    };
    spec.expert_output = session.combine_region();
    plan = graph::plan_step(session, spec);
  }
  static comm::ep_config config(const sim::problem& p, double deadline_seconds, int ctas) {
    comm::ep_config c = sim::make_config(p, ctas, 256);
    c.deadline_seconds = deadline_seconds;
    return c;
  }
  cudaError_t step(std::uint64_t k) {
    const cudaError_t made = sim::generate_batch(p, mpi().rank(), k, b.inputs(), s.get());
    return made != cudaSuccess ? made : graph::enqueue(plan, s.get());
  }
  // The plan without its last node (combine).
  cudaError_t step_without_combine(std::uint64_t k) {
    graph::step_plan partial = plan;
    partial.nodes.pop_back();
    const cudaError_t made = sim::generate_batch(p, mpi().rank(), k, b.inputs(), s.get());
    return made != cudaSuccess ? made : graph::enqueue(partial, s.get());
  }
  std::vector<std::uint16_t> output() const {
    std::vector<std::uint16_t> host(std::size_t(p.max_tokens) * p.hidden);
    EPG_CHECK_CUDA(cudaMemcpy(host.data(), b.output(), host.size() * 2, cudaMemcpyDeviceToHost));
    return host;
  }
  long long wrong(std::uint64_t k) const { return sim::count_wrong(p, k, mpi().rank(), output().data()); }
  // True when every element of this step's rows is NaN (a faulted combine).
  bool output_is_nan(std::uint64_t k) const {
    const auto host = output();
    const std::size_t n = std::size_t(sim::token_count(p, mpi().rank(), k)) * p.hidden;
    for (std::size_t i = 0; i < n; ++i)
      if ((host[i] & 0x7f80u) != 0x7f80u || (host[i] & 0x7fu) == 0) return false;
    return n > 0;
  }
};

// check_faults on every rank: returns this rank's error text; fails the test unless every
// rank threw.
std::string faults_on_every_rank(comm::ep_session& session) {
  std::string text;
  try {
    session.check_faults();
  } catch (const comm::error& e) {
    text = e.what();
  }
  EXPECT_FALSE(text.empty()) << "check_faults reported nothing on this rank";
  EXPECT_TRUE(all_ok(!text.empty())) << "a rank got no error";
  return text;
}

// Whether any rank's text contains `fragment`.
bool any_rank_says(const std::string& text, const std::string& fragment) {
  return !all_ok(text.find(fragment) == std::string::npos);
}

int odd_rank() { return mpi().size() - 1; }

// Waits for `stream` at most `seconds`. A stream still busy then holds a kernel that spins, a
// hang the process cannot recover from: the job ends with a message instead of blocking.
void sync_or_abort(cudaStream_t stream, double seconds, const char* what) {
  const auto start = clock_type::now();
  for (cudaError_t e = cudaStreamQuery(stream);; e = cudaStreamQuery(stream)) {
    if (e != cudaErrorNotReady) {
      EXPECT_EQ(e, cudaSuccess) << what << ": " << cudaGetErrorString(e);
      return;
    }
    if (seconds_since(start) > seconds) {
      std::fprintf(stderr, "rank %d: %s did not finish within %.0f s: a hang; aborting the job\n", mpi().rank(), what,
                   seconds);
      MPI_Abort(MPI_COMM_WORLD, 3);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

}  // namespace

TEST(Safety, AnExtraDispatchOnOneRankFailsEveryRankInsteadOfMixingSteps) {
  {
    world w(10.0);
    const bool odd = mpi().rank() == odd_rank();
    kernels::dispatch_op extra(w.session, w.b.dispatch_args());
    ASSERT_EQ(w.step(0), cudaSuccess);
    w.s.sync();
    EXPECT_EQ(w.wrong(0), 0);
    ASSERT_EQ(sim::generate_batch(w.p, mpi().rank(), 1, w.b.inputs(), w.s.get()), cudaSuccess);
    ASSERT_EQ(graph::enqueue(w.plan, w.s.get()), cudaSuccess);  // queued; the extra one is slipped in below
    w.s.sync();
    // Step 2: the odd rank runs one dispatch more, the others will one later (totals match).
    ASSERT_EQ(sim::generate_batch(w.p, mpi().rank(), 2, w.b.inputs(), w.s.get()), cudaSuccess);
    if (odd) ASSERT_EQ(extra.run(w.s.get()), cudaSuccess);
    (void)graph::enqueue(w.plan, w.s.get());
    const auto start = clock_type::now();
    w.s.sync();
    EXPECT_LT(seconds_since(start), 5.0) << "the mismatch must be caught at the barrier, not at the deadline";
    // No rank's step-2 output may pass for a result: its combine faulted and wrote NaN.
    EXPECT_TRUE(w.output_is_nan(2)) << "rank " << mpi().rank();
    const std::string text = faults_on_every_rank(w.session);
    EXPECT_NE(text.find("rank " + std::to_string(odd_rank())), std::string::npos) << text;
    EXPECT_TRUE(any_rank_says(text, "collective out of step")) << text;
    // Refused from now on, on the host too: the others' balancing dispatch never runs.
    if (!odd) EXPECT_EQ(extra.run(w.s.get()), cudaErrorNotPermitted);
    EXPECT_EQ(graph::enqueue(w.plan, w.s.get()), cudaErrorNotPermitted);
  }
  // Recovery: a new session on the same communicator works bit-exactly.
  world again(10.0);
  ASSERT_EQ(again.step(7), cudaSuccess);
  again.s.sync();
  EXPECT_EQ(again.wrong(7), 0);
  EXPECT_NO_THROW(again.session.check_faults());
}

TEST(Safety, ASkippedCombineOnOneRankFailsEveryRank) {
  world w(10.0);
  const bool odd = mpi().rank() == odd_rank();
  ASSERT_EQ(w.step(0), cudaSuccess);
  ASSERT_EQ(odd ? w.step_without_combine(1) : w.step(1), cudaSuccess);
  (void)w.step(2);
  const auto start = clock_type::now();
  w.s.sync();
  EXPECT_LT(seconds_since(start), 5.0);
  const std::string text = faults_on_every_rank(w.session);
  EXPECT_TRUE(any_rank_says(text, "collective out of step")) << text;
  EXPECT_TRUE(w.session.failed());
}

TEST(Safety, ARankThatNeverLaunchesEndsEveryPeersKernelAtTheDeadline) {
  constexpr double deadline = 2.0;
  world w(deadline);
  const bool odd = mpi().rank() == odd_rank();
  ASSERT_EQ(w.step(0), cudaSuccess);
  w.s.sync();
  const auto start = clock_type::now();
  if (!odd) (void)w.step(1);  // the odd rank stalls: it launches nothing in step 1
  w.s.sync();
  const double waited = seconds_since(start);
  if (!odd) {
    EXPECT_GE(waited, 0.8 * deadline) << "ended before the deadline: the wait was not bounded by it";
    EXPECT_LT(waited, deadline + 8.0) << "the kernel did not end at its deadline";
    EXPECT_TRUE(w.output_is_nan(1));
    const auto f = w.session.read_faults().fatal;
    EXPECT_EQ(f.code, comm::fault_code::peer_timeout);
    EXPECT_EQ(f.missing, 1ull << odd_rank());
  }
  // The stalled rank comes straight back and checks faults while its peers still sit in their
  // kernels: its host agreement waits long enough (twice the deadline) for them, so every
  // rank, the stalled one too, gets the full report naming it.
  const std::string text = faults_on_every_rank(w.session);
  EXPECT_NE(text.find("rank " + std::to_string(odd_rank()) + " did not reach collective #3 (dispatch)"),
            std::string::npos)
      << text;
}

TEST(Safety, ARankThatLeavesRightAfterCheckFaultsStillCountsInIt) {
  const bool odd = mpi().rank() == odd_rank();
  std::string text;
  try {
    world w(10.0);
    ASSERT_EQ(w.step(0), cudaSuccess);
    w.fail_experts = odd;
    (void)w.step(1);
    w.s.sync();
    // Rank 0 posts first and is done first: its exception unwinds the session (a local
    // teardown: it leaves) while the others may still be reading its round.
    if (mpi().rank() != 0) std::this_thread::sleep_for(std::chrono::milliseconds(200));
    w.session.check_faults();
  } catch (const comm::error& e) {
    text = e.what();
  }
  EXPECT_NE(text.find("rank " + std::to_string(odd_rank()) + ": a step node failed on this rank"), std::string::npos)
      << text;
  EXPECT_TRUE(all_ok(!text.empty()));
}

TEST(Safety, AFailingExpertStageOnOneRankStopsThePeersAtOnce) {
  world w(20.0);
  const bool odd = mpi().rank() == odd_rank();
  ASSERT_EQ(w.step(0), cudaSuccess);
  w.s.sync();
  w.fail_experts = odd;
  const auto start = clock_type::now();
  std::string failed;
  ASSERT_EQ(sim::generate_batch(w.p, mpi().rank(), 1, w.b.inputs(), w.s.get()), cudaSuccess);
  EXPECT_EQ(graph::enqueue(w.plan, w.s.get(), &failed), odd ? cudaErrorInvalidValue : cudaSuccess);
  if (odd) EXPECT_EQ(failed, "expert stage");
  w.s.sync();
  EXPECT_LT(seconds_since(start), 10.0) << "the peers waited for the deadline instead of being told";
  EXPECT_TRUE(w.output_is_nan(1));
  const std::string text = faults_on_every_rank(w.session);
  EXPECT_TRUE(any_rank_says(text, "rank " + std::to_string(odd_rank()) + ": a step node failed on this rank: node 2"))
      << text;
  if (!odd) EXPECT_NE(text.find("peer stopped: rank " + std::to_string(odd_rank())), std::string::npos) << text;
}

TEST(Safety, PlanningOrCaptureThatFailsOnOneRankThrowsOnEveryRank) {
  world w(10.0);
  const bool odd = mpi().rank() == odd_rank();
  // A misaligned payload on one rank only.
  kernels::dispatch_args args = w.b.dispatch_args();
  if (odd) args.payloads[0].data = static_cast<const char*>(args.payloads[0].data) + 2;
  std::string text;
  try {
    kernels::dispatch_op op(w.session, args);
  } catch (const comm::error& e) {
    text = e.what();
  }
  EXPECT_TRUE(all_ok(!text.empty()));
  EXPECT_NE(text.find(odd ? "not aligned to 16 bytes" : "rank " + std::to_string(odd_rank()) + " failed this step"),
            std::string::npos)
      << text;
  // A capture that fails on one rank only.
  w.fail_experts = odd;
  text.clear();
  try {
    graph::step_graph g(w.plan, w.s);
  } catch (const comm::error& e) {
    text = e.what();
  }
  EXPECT_TRUE(all_ok(!text.empty()));
  if (odd) EXPECT_NE(text.find("step_graph capture of node 'expert stage'"), std::string::npos) << text;
  // Both failures were agreed: the ranks are still in step and the session works.
  w.fail_experts = false;
  EXPECT_FALSE(w.session.failed());
  graph::step_graph g(w.plan, w.s);
  ASSERT_EQ(sim::generate_batch(w.p, mpi().rank(), 5, w.b.inputs(), w.s.get()), cudaSuccess);
  ASSERT_EQ(g.replay(w.s), cudaSuccess);
  w.s.sync();
  EXPECT_EQ(w.wrong(5), 0);
  EXPECT_NO_THROW(w.session.check_faults());
}

TEST(Safety, HostCollectivesInADifferentOrderAreNamed) {
  world w(5.0);
  std::string text;
  try {
    if (mpi().rank() == odd_rank()) w.session.barrier();
    else (void)w.session.all_agree(true);
  } catch (const comm::error& e) {
    text = e.what();
  }
  EXPECT_TRUE(all_ok(!text.empty()));
  EXPECT_NE(text.find(mpi().rank() == odd_rank() ? "is in 'all_agree' while this rank is in 'barrier'"
                                                 : "is in 'barrier' while this rank is in 'all_agree'"),
            std::string::npos)
      << text;
  EXPECT_TRUE(w.session.failed());
}

TEST(Safety, PlansAndGraphsSurviveAMoveOfTheSession) {
  auto p = small_problem();
  std::optional<comm::ep_session> first(std::in_place, world_comm(), world::config(p, 10.0, 16));
  sim::batch_storage b(p);
  graph::stream s;
  graph::step_spec spec;
  spec.dispatch = b.dispatch_args();
  spec.combine = b.combine_args();
  spec.experts = sim::reference_expert_stage(p);
  spec.expert_output = first->combine_region();
  graph::step_graph step(graph::plan_step(*first, spec), s);
  comm::ep_session moved(std::move(*first));
  first.reset();
  for (std::uint64_t k = 0; k < 4; ++k) {
    ASSERT_EQ(sim::generate_batch(p, mpi().rank(), k, b.inputs(), s.get()), cudaSuccess);
    ASSERT_EQ(step.replay(s), cudaSuccess);
    s.sync();
    std::vector<std::uint16_t> host(std::size_t(p.max_tokens) * p.hidden);
    EPG_CHECK_CUDA(cudaMemcpy(host.data(), b.output(), host.size() * 2, cudaMemcpyDeviceToHost));
    EXPECT_EQ(sim::count_wrong(p, k, mpi().rank(), host.data()), 0) << "step " << k;
  }
  EXPECT_NO_THROW(moved.check_faults());
}

TEST(Safety, APeerThatAbortsOrUnwindsEndsTheOthersStepsAndTeardownAtOnce) {
  constexpr double deadline = 20.0;
  const bool odd = mpi().rank() == odd_rank();
  std::string text;
  double step_seconds = 0, teardown_seconds = 0;
  {
    std::optional<world> w(std::in_place, deadline);
    ASSERT_EQ(w->step(0), cudaSuccess);
    w->s.sync();
    EXPECT_TRUE(all_ok(true));  // step 0 done everywhere before the odd rank leaves
    if (odd) {
      w->session.abort();
      EXPECT_EQ(w->step(1), cudaErrorNotPermitted);
    } else {
      const auto start = clock_type::now();
      (void)w->step(1);
      w->s.sync();
      step_seconds = seconds_since(start);
      EXPECT_TRUE(w->output_is_nan(1));
      try {
        w->session.check_faults();
      } catch (const comm::error& e) {
        text = e.what();
      }
    }
    const auto start = clock_type::now();
    w.reset();
    teardown_seconds = seconds_since(start);
  }
  if (!odd) {
    EXPECT_LT(step_seconds, deadline / 2) << "the peers waited for the deadline instead of seeing the abort";
    EXPECT_NE(text.find("rank " + std::to_string(odd_rank()) + " left the session"), std::string::npos) << text;
  }
  EXPECT_LT(teardown_seconds, deadline / 2);
  EXPECT_TRUE(all_ok(true));

  // The same when a rank unwinds from an exception while it holds a session.
  teardown_seconds = 0;
  try {
    world w(deadline);
    if (odd) throw std::runtime_error("this rank's own error");
    std::this_thread::sleep_for(std::chrono::milliseconds(200));  // the odd rank is gone by now
    const auto start = clock_type::now();
    try {
      w.session.barrier();
      ADD_FAILURE() << "barrier passed although a rank left";
    } catch (const comm::error& e) {
      EXPECT_NE(std::string(e.what()).find("left the session"), std::string::npos) << e.what();
    }
    teardown_seconds = seconds_since(start);
  } catch (const std::runtime_error& e) {
    EXPECT_EQ(std::string(e.what()), "this rank's own error");  // the original error survives teardown
  }
  EXPECT_LT(teardown_seconds, deadline / 2);
  EXPECT_TRUE(all_ok(true));
}

namespace {
// Spins about `ns` nanoseconds on the device.
__global__ void spin_kernel(unsigned long long ns) {
  unsigned long long start, now;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(start));
  do asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(now));
  while (now - start < ns);
}
}  // namespace

TEST(Safety, ReceiveBuffersHoldUntilThisRanksCombineStartsEvenWhenPeersRunAhead) {
  constexpr int steps = 4;
  world w(20.0);
  const std::size_t bytes = w.session.layout().payloads[0].bytes;
  std::vector<comm::device_buffer> early, late;
  for (int k = 0; k < steps; ++k) early.emplace_back(bytes), late.emplace_back(bytes);
  const bool slow = mpi().rank() == 0;
  int step_index = 0;
  // Rank 0 snapshots its receive rows when its expert stage starts and again after a long
  // stall right before combine; the peers queue their next steps without waiting.
  graph::step_spec spec;
  spec.dispatch = w.b.dispatch_args();
  spec.combine = w.b.combine_args();
  const auto experts = sim::reference_expert_stage(w.p);
  spec.experts = [&](const graph::expert_stage_io& io, cudaStream_t st) {
    cudaError_t e = cudaMemcpyAsync(early[step_index].get(), io.recv_payloads[0], bytes, cudaMemcpyDeviceToDevice, st);
    if (e == cudaSuccess) e = experts(io, st);
    if (e == cudaSuccess && slow) {
      spin_kernel<<<1, 1, 0, st>>>(20'000'000);
      e = cudaGetLastError();
    }
    if (e == cudaSuccess) e = cudaMemcpyAsync(late[step_index].get(), io.recv_payloads[0], bytes, cudaMemcpyDeviceToDevice, st);
    return e;
  };
  spec.expert_output = w.session.combine_region();
  const auto plan = graph::plan_step(w.session, spec);
  for (step_index = 0; step_index < steps; ++step_index) {
    ASSERT_EQ(sim::generate_batch(w.p, mpi().rank(), 100 + step_index, w.b.inputs(), w.s.get()), cudaSuccess);
    ASSERT_EQ(graph::enqueue(plan, w.s.get()), cudaSuccess);
  }
  w.s.sync();
  for (int k = 0; k < steps; ++k) {
    std::vector<std::uint8_t> a(bytes), z(bytes);
    EPG_CHECK_CUDA(cudaMemcpy(a.data(), early[k].get(), bytes, cudaMemcpyDeviceToHost));
    EPG_CHECK_CUDA(cudaMemcpy(z.data(), late[k].get(), bytes, cudaMemcpyDeviceToHost));
    EXPECT_TRUE(a == z) << "step " << k << ": a peer overwrote this rank's receive rows before its combine";
  }
  EXPECT_NO_THROW(w.session.check_faults());
  EXPECT_EQ(w.wrong(100 + steps - 1), 0);
}

TEST(Safety, OverlappingLaunchesOfOneSessionAreAFaultNotAHang) {
  world w(5.0);
  graph::stream other;
  kernels::dispatch_op dispatch(w.session, w.b.dispatch_args());
  ASSERT_EQ(sim::generate_batch(w.p, mpi().rank(), 0, w.b.inputs(), w.s.get()), cudaSuccess);
  w.s.sync();
  // Rank 0 comes late, so the others' first launch waits at its barrier while the second,
  // on another stream, starts beside it.
  if (mpi().rank() == 0) std::this_thread::sleep_for(std::chrono::milliseconds(300));
  ASSERT_EQ(dispatch.run(w.s.get()), cudaSuccess);
  ASSERT_EQ(dispatch.run(other.get()), cudaSuccess);
  sync_or_abort(w.s.get(), 15.0, "the first stream");
  sync_or_abort(other.get(), 15.0, "the second stream");
  const std::string text = faults_on_every_rank(w.session);
  EXPECT_TRUE(any_rank_says(text, "overlapping collective launches")) << text;
}

// Combine claims its CTA index beside NCCL's arrive, so a refused combine has arrived: the
// second combine (another stream, beside the first one waiting for rank 0) must still end in
// a fault on every rank, with no rank left waiting in NCCL's barrier.
TEST(Safety, OverlappingCombinesAreAFaultNotAHang) {
  world w(5.0);
  graph::stream other;
  graph::step_plan combine_only = w.plan;
  combine_only.nodes.erase(combine_only.nodes.begin(), combine_only.nodes.end() - 1);
  ASSERT_EQ(w.step_without_combine(0), cudaSuccess);
  w.s.sync();
  if (mpi().rank() == 0) std::this_thread::sleep_for(std::chrono::milliseconds(300));
  ASSERT_EQ(graph::enqueue(combine_only, w.s.get()), cudaSuccess);
  ASSERT_EQ(graph::enqueue(combine_only, other.get()), cudaSuccess);
  sync_or_abort(w.s.get(), 15.0, "the first stream");
  sync_or_abort(other.get(), 15.0, "the second stream");
  const std::string text = faults_on_every_rank(w.session);
  EXPECT_TRUE(any_rank_says(text, "overlapping collective launches")) << text;
}

// The interleaving the claim on a CTA index must cover to its very end: a dispatch on another
// stream starts while combine pulls (after combine's barrier, before it ended). Were the claim
// given back at the barrier, this dispatch would run with the barrier epoch combine had not
// written back yet, and a peer could wait in NCCL's barrier for an arrival that never comes.
TEST(Safety, ADispatchStartingWhileCombinePullsIsAFaultNotAHang) {
  sim::problem big = small_problem();
  big.max_tokens = big.min_tokens = 4096;  // a pull of several hundred microseconds on 16 CTAs
  big.hidden = 7168;
  world w(5.0, 16, big);
  graph::stream other;
  kernels::dispatch_op dispatch(w.session, w.b.dispatch_args());
  graph::step_plan combine_only = w.plan;
  combine_only.nodes.erase(combine_only.nodes.begin(), combine_only.nodes.end() - 1);
  // Loaded now: CUDA loads a kernel at its first launch. Run as the first test of a process
  // (np 4), that load outlasted combine's pull and the dispatch no longer overlapped it.
  spin_kernel<<<1, 1, 0, other.get()>>>(0);
  ASSERT_EQ(cudaStreamSynchronize(other.get()), cudaSuccess);
  ASSERT_EQ(w.step_without_combine(0), cudaSuccess);
  w.s.sync();
  mpi().barrier();  // the ranks' combine barriers meet within microseconds
  ASSERT_EQ(graph::enqueue(combine_only, w.s.get()), cudaSuccess);
  spin_kernel<<<1, 1, 0, other.get()>>>(100000);
  ASSERT_EQ(cudaGetLastError(), cudaSuccess);
  ASSERT_EQ(dispatch.run(other.get()), cudaSuccess);
  sync_or_abort(w.s.get(), 15.0, "the first stream");
  sync_or_abort(other.get(), 15.0, "the second stream");
  const std::string text = faults_on_every_rank(w.session);
  EXPECT_TRUE(any_rank_says(text, "overlapping collective launches")) << text;
}
