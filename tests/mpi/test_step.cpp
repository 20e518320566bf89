// Step graphs: captured once and replayed 1000 times with a fresh batch size and routing
// drawn on the device before every replay; and embedded into a caller's graph.
#include <gtest/gtest.h>

#include <set>
#include <vector>

#include "epgraph/comm/device_buffer.hpp"
#include "epgraph/comm/error.hpp"
#include "epgraph/graph/step.hpp"
#include "epgraph/graph/watchdog.hpp"
#include "epgraph/sim/device.hpp"
#include "epgraph/sim/reference.hpp"
#include "world.hpp"

using namespace epgraph;
using mpitest::mpi;
using mpitest::world_comm;

namespace {

struct step_fixture {
  sim::problem p;
  comm::ep_session session;
  sim::batch_storage buffers;
  graph::step_plan plan;

  static sim::problem make_problem() {
    sim::problem p;
    p.ep_size = mpi().size();
    p.max_tokens = 64;
    p.top_k = 8;
    p.num_experts = 16 * mpi().size();
    p.hidden = 512;
    p.seed = 77;
    p.domain_size = mpitest::domain_size();
  return p;
  }
  static comm::ep_config make_config(const sim::problem& p, bool programmatic) {
    comm::ep_config c = sim::make_config(p, 32, 256);
    c.programmatic_launch = programmatic;
    return c;
  }
  explicit step_fixture(bool programmatic = true)
      : p(make_problem()), session(world_comm(), make_config(p, programmatic)), buffers(p) {
    graph::step_spec spec;
    spec.dispatch = buffers.dispatch_args();
    spec.combine = buffers.combine_args();
    spec.experts = sim::reference_expert_stage(p);
    spec.expert_output = session.combine_region();
    plan = graph::plan_step(session, spec);
  }
  // Exact comparison of this rank's output for `step`; returns the number of wrong elements.
  long long check(std::uint64_t step) {
    const int T = sim::token_count(p, mpi().rank(), step);
    std::vector<std::uint16_t> host(std::size_t(T) * p.hidden);
    EPG_CHECK_CUDA(cudaMemcpy(host.data(), buffers.output(), host.size() * 2, cudaMemcpyDeviceToHost));
    return sim::count_wrong(p, step, mpi().rank(), host.data());
  }
};

}  // namespace

TEST(StepGraph, ThousandReplaysWithFreshRoutingNoRecapture) {
  step_fixture f;
  graph::stream s;
  graph::step_graph step(f.plan, s);
  graph::event done;
  long long wrong_steps = 0;
  std::set<int> sizes;
  for (std::uint64_t k = 0; k < 1000; ++k) {
    ASSERT_EQ(sim::generate_batch(f.p, mpi().rank(), k, f.buffers.inputs(), s.get()), cudaSuccess);
    ASSERT_EQ(step.replay(s), cudaSuccess);
    done.record(s);
    ASSERT_TRUE(graph::wait_for(done, std::chrono::seconds(60))) << graph::describe_hang(f.session, k, std::chrono::seconds(60));
    wrong_steps += f.check(k) != 0;
    sizes.insert(sim::token_count(f.p, mpi().rank(), k));
  }
  EXPECT_EQ(wrong_steps, 0);
  EXPECT_GT(sizes.size(), 40u);  // the batch size really varied
  EXPECT_EQ(f.session.read_faults().first().code, comm::fault_code::none);
  // Progress record: every rank saw every rank of its domain reach its 2000th collective, a
  // combine (ranks of other domains leave no progress words here).
  const auto seen = f.session.peer_progress();
  for (int r = 0; r < mpi().size(); ++r) {
    const bool member = f.session.view().in_domain(r);
    EXPECT_EQ(seen[r].seq, member ? 2000u : 0u) << "rank " << r;
    EXPECT_EQ(seen[r].kind, member ? comm::collective_kind::combine : comm::collective_kind::none) << "rank " << r;
    EXPECT_FALSE(seen[r].stopped);
  }
}

// Edges of `g` between two nodes that CUDA's programmatic dependent launch joins.
static std::size_t programmatic_edges(cudaGraph_t g) {
  std::size_t n = 0;
  EPG_CHECK_CUDA(cudaGraphGetEdges(g, nullptr, nullptr, nullptr, &n));
  std::vector<cudaGraphNode_t> from(n), to(n);
  std::vector<cudaGraphEdgeData> data(n);
  if (n) EPG_CHECK_CUDA(cudaGraphGetEdges(g, from.data(), to.data(), data.data(), &n));
  std::size_t programmatic = 0;
  for (const cudaGraphEdgeData& e : data) programmatic += e.type == cudaGraphDependencyTypeProgrammatic;
  return programmatic;
}

// ep_config::programmatic_launch: on (the default), the captured step joins its kernels by
// programmatic edges (each may launch while the one before it runs, and waits for it before
// touching memory); off, by plain edges only. Both replay exactly, with the batch size and
// routing changing under the graph.
TEST(StepGraph, ProgrammaticAndPlainLaunchesReplayExactly) {
  for (const bool programmatic : {true, false}) {
    SCOPED_TRACE(programmatic ? "programmatic launches" : "plain launches");
    step_fixture f(programmatic);
    graph::stream s;
    graph::step_graph step(f.plan, s);
    const std::size_t edges = programmatic_edges(step.get());
    if (programmatic)
      EXPECT_GE(edges, 2u);  // at least the two summary kernels, and expert stage -> combine
    else
      EXPECT_EQ(edges, 0u);
    for (std::uint64_t k = 200; k < 240; ++k) {
      ASSERT_EQ(sim::generate_batch(f.p, mpi().rank(), k, f.buffers.inputs(), s.get()), cudaSuccess);
      ASSERT_EQ(step.replay(s), cudaSuccess);
      s.sync();
      EXPECT_EQ(f.check(k), 0) << "step " << k;
    }
    EXPECT_EQ(f.session.read_faults().first().code, comm::fault_code::none);
  }
}

TEST(StepGraph, EmbeddedAsChildGraphInTheCallersGraph) {
  step_fixture f;
  graph::stream s;
  graph::step_graph step(f.plan, s);
  cudaGraph_t raw = nullptr;
  EPG_CHECK_CUDA(cudaGraphCreate(&raw, 0));
  graph::graph caller = graph::graph::from_native_handle(raw);
  cudaGraphNode_t child = nullptr;
  EPG_CHECK_CUDA(cudaGraphAddChildGraphNode(&child, caller.get(), nullptr, 0, step.get()));
  graph::graph_exec exec = caller.instantiate();
  for (std::uint64_t k = 100; k < 110; ++k) {
    ASSERT_EQ(sim::generate_batch(f.p, mpi().rank(), k, f.buffers.inputs(), s.get()), cudaSuccess);
    ASSERT_EQ(exec.launch(s), cudaSuccess);
    s.sync();
    EXPECT_EQ(f.check(k), 0) << "step " << k;
  }
}

TEST(StepGraph, CapturedInsideTheCallersOwnCapture) {
  step_fixture f;
  graph::stream s;
  graph::step_graph step(f.plan, s);
  // The runtime captures its own graph: its batch generation, then our step.
  std::uint64_t k = 200;
  comm::device_buffer step_counter(sizeof(std::uint64_t));
  graph::capture_scope capture(s);
  ASSERT_EQ(step.replay(s), cudaSuccess);  // recorded as a child graph of the caller's capture
  graph::graph_exec exec = capture.end().instantiate();
  for (; k < 210; ++k) {
    ASSERT_EQ(sim::generate_batch(f.p, mpi().rank(), k, f.buffers.inputs(), s.get()), cudaSuccess);
    ASSERT_EQ(exec.launch(s), cudaSuccess);
    s.sync();
    EXPECT_EQ(f.check(k), 0) << "step " << k;
  }
  // Also the plain node list enqueued straight into a capture.
  graph::capture_scope capture2(s);
  ASSERT_EQ(graph::enqueue(f.plan, s.get()), cudaSuccess);
  graph::graph_exec exec2 = capture2.end().instantiate();
  ASSERT_EQ(sim::generate_batch(f.p, mpi().rank(), k, f.buffers.inputs(), s.get()), cudaSuccess);
  ASSERT_EQ(exec2.launch(s), cudaSuccess);
  s.sync();
  EXPECT_EQ(f.check(k), 0);
}
