// The expert placement table (ep_config::expert_slots_per_rank): moved and replicated experts,
// changed between replays of graphs captured once, bit-exact against the host reference in
// the source-major and the expert-major layout (rows copied and indexed); the load statistics
// per slot; and a table that one rank gets wrong, which fails every rank and changes nothing.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <utility>

#include "epgraph/comm/error.hpp"
#include "epgraph/comm/expert_placement.hpp"
#include "epgraph/graph/step.hpp"
#include "epgraph/sim/device.hpp"
#include "epgraph/sim/reference.hpp"
#include "world.hpp"

using namespace epgraph;
using mpitest::mpi;
using mpitest::world_comm;

namespace {

constexpr int kPerRank = 8, kSlots = 10;  // two spare slots per rank for replicas

sim::problem make_problem() {
  sim::problem p;
  p.ep_size = mpi().size();
  p.max_tokens = 100;
  p.top_k = 8;
  p.num_experts = kPerRank * p.ep_size;
  p.hidden = 520;  // 1040-byte rows
  p.seed = 31;
  p.dist = sim::routing::skewed;  // low ids are hot: worth replicating
  p.domain_size = mpitest::domain_size();
  return p;
}

comm::ep_config config_with_table(const sim::problem& p) {
  comm::ep_config c = sim::make_config(p, 32, 256);
  c.expert_slots_per_rank = kSlots;
  return c;
}

// A table from a list of (logical expert, rank, slot) replicas: physical ids in list order.
comm::expert_placement table(int experts, std::vector<std::array<int, 3>> replicas, int slots = kSlots) {
  std::stable_sort(replicas.begin(), replicas.end(), [](const auto& a, const auto& b) { return a[0] < b[0]; });
  comm::expert_placement t;
  t.num_experts = experts;
  t.local_slots = slots;
  t.replica_offsets.assign(static_cast<std::size_t>(experts) + 1, 0);
  for (const auto& r : replicas) {
    ++t.replica_offsets[static_cast<std::size_t>(r[0]) + 1];
    t.replica_ids.push_back(static_cast<std::int32_t>(t.rank_of.size()));
    t.rank_of.push_back(r[1]);
    t.local_of.push_back(r[2]);
  }
  for (int e = 0; e < experts; ++e) t.replica_offsets[static_cast<std::size_t>(e) + 1] += t.replica_offsets[static_cast<std::size_t>(e)];
  return t;
}

// Replicated: the contiguous rule, plus hot expert 0 on every other rank (slot 8) and
// expert 1 on the last rank (slot 9).
comm::expert_placement replicated(int ep) {
  std::vector<std::array<int, 3>> r;
  for (int e = 0; e < kPerRank * ep; ++e) r.push_back({e, e / kPerRank, e % kPerRank});
  for (int rank = 1; rank < ep; ++rank) r.push_back({0, rank, 8});
  r.push_back({1, ep - 1, 9});
  return table(kPerRank * ep, r);
}

// Moved: every expert one rank further, in reversed slots; expert 3 also on every rank's slot 9
// but its own.
comm::expert_placement moved(int ep) {
  std::vector<std::array<int, 3>> r;
  for (int e = 0; e < kPerRank * ep; ++e) r.push_back({e, (e / kPerRank + 1) % ep, kPerRank - 1 - e % kPerRank});
  for (int rank = 0; rank < ep; ++rank)
    if (rank != (3 / kPerRank + 1) % ep) r.push_back({3, rank, 9});
  return table(kPerRank * ep, r);
}


template <class T>
std::vector<T> to_host(const void* device, std::size_t count) {
  std::vector<T> host(count);
  EPG_CHECK_CUDA(cudaMemcpy(host.data(), device, count * sizeof(T), cudaMemcpyDeviceToHost));
  return host;
}

}  // namespace

TEST(Placement, MovedAndReplicatedExpertsAreExactAndTablesChangeBetweenReplays) {
  const sim::problem p = make_problem();
  const int me = mpi().rank(), ep = p.ep_size;
  comm::ep_session session(world_comm(), config_with_table(p));
  EXPECT_EQ(session.placement().local_slots, kSlots);  // starts as the contiguous rule
  sim::batch_storage buffers(p);
  // Two graphs on one session, captured once: source-major (zero copy) and expert-major.
  const graph::step_spec source_major = sim::zero_copy_step(session, buffers, p);
  graph::step_spec expert_major = source_major;
  expert_major.expert_output = nullptr;
  expert_major.expert_major = kernels::permute_args{{comm::expert_major_form::packed, 0, 0, false}, 1};
  // ... and expert-major with indexed rows (copy_rows = false): the reference stage gathers
  // through receive_rows from the receive buffers.
  graph::step_spec indexed = expert_major;
  indexed.expert_major = kernels::permute_args{{comm::expert_major_form::packed, 0, 0, false, false}, 1};
  graph::expert_stage_io seen, seen_indexed;
  auto keep_view = [inner = sim::reference_expert_stage(p)](graph::expert_stage_io& keep) {
    return [&keep, inner](const graph::expert_stage_io& io, cudaStream_t s) {
      keep = io;
      return inner(io, s);
    };
  };
  expert_major.experts = keep_view(seen);
  indexed.experts = keep_view(seen_indexed);
  graph::stream s;
  graph::step_graph plain(graph::plan_step(session, source_major), s);
  graph::step_graph grouped(graph::plan_step(session, expert_major), s);
  graph::step_graph grouped_indexed(graph::plan_step(session, indexed), s);
  ASSERT_TRUE(seen.expert_major.has_value());
  ASSERT_TRUE(seen_indexed.expert_major.has_value());
  ASSERT_EQ(seen.expert_major->receive_rows, nullptr);
  ASSERT_NE(seen_indexed.expert_major->receive_rows, nullptr);
  ASSERT_NE(seen.placement.slot_expert, nullptr);

  const comm::expert_placement tables[] = {replicated(ep), moved(ep), comm::contiguous_placement(p.num_experts, ep)};
  std::vector<std::uint64_t> want_load(kSlots, 0);
  session.reset_expert_load();
  long long wrong = 0, views_checked = 0, views_indexed = 0;
  std::string first_wrong;
  std::vector<std::uint16_t> host(static_cast<std::size_t>(p.max_tokens) * p.hidden);
  for (std::uint64_t step = 0; step < 400; ++step) {
    if (step % 100 == 0) {  // a new table between replays: no recapture
      comm::expert_placement t = tables[(step / 100) % 3];
      t.local_slots = kSlots;
      session.set_placement(t);
      EXPECT_EQ(session.placement().rank_of, t.rank_of);
    }
    const comm::expert_placement& t = session.placement();
    const bool grouped_step = step % 2 == 1;
    const bool indexed_step = step % 4 == 3;  // of the checked steps 1, 11, 21, ...: 11, 31, ...
    // EXPECT, not ASSERT: a rank that left the loop would leave its peers in set_placement.
    EXPECT_EQ(sim::generate_batch(p, me, step, buffers.inputs(), s.get()), cudaSuccess);
    EXPECT_EQ((indexed_step ? grouped_indexed : grouped_step ? grouped : plain).replay(s), cudaSuccess);
    s.sync();
    const int T = sim::token_count(p, me, step);
    EPG_CHECK_CUDA(cudaMemcpy(host.data(), buffers.output(), static_cast<std::size_t>(T) * p.hidden * 2,
                              cudaMemcpyDeviceToHost));
    const long long bad = sim::count_wrong(p, step, me, host.data(), &t);
    if (bad && first_wrong.empty()) first_wrong = "step " + std::to_string(step) + ": " + std::to_string(bad);
    wrong += bad;
    // The expert-major view holds the rows of the replicas this rank serves, in order.
    const sim::routing_table routes = sim::draw_routing(p, step);
    if (grouped_step && step % 10 == 1) {
      const kernels::expert_major_view& view = *(indexed_step ? seen_indexed : seen).expert_major;
      const auto want = sim::expect_expert_major(p, routes, t, me);
      const auto counts = to_host<std::int32_t>(view.counts, kSlots);
      const auto origins = to_host<std::int32_t>(view.origins, 3 * view.rows);
      const auto receive_rows = indexed_step ? to_host<std::int32_t>(view.receive_rows, view.rows) : std::vector<std::int32_t>{};
      std::size_t row = 0;
      for (int slot = 0; slot < kSlots; ++slot) {
        EXPECT_EQ(counts[static_cast<std::size_t>(slot)], static_cast<int>(want[static_cast<std::size_t>(slot)].size()))
            << "step " << step << " slot " << slot;
        for (const sim::expert_row& r : want[static_cast<std::size_t>(slot)]) {
          if (row < view.rows) {
            EXPECT_TRUE(origins[3 * row] == r.src && origins[3 * row + 1] == r.slot && origins[3 * row + 2] == r.entry)
                << "step " << step << " slot " << slot;
            if (indexed_step) {
              EXPECT_EQ(receive_rows[row], r.src * p.max_tokens + r.slot) << "step " << step << " slot " << slot;
            }
          }
          ++row;
        }
      }
      ++views_checked;
      views_indexed += indexed_step;
    }
    for (int src = 0; src < ep; ++src) {
      const auto loads = comm::slot_loads(t, ep, routes.ids[static_cast<std::size_t>(src)], p.top_k);
      for (int slot = 0; slot < kSlots; ++slot)
        want_load[static_cast<std::size_t>(slot)] +=
            static_cast<std::uint64_t>(loads[static_cast<std::size_t>(me)][static_cast<std::size_t>(slot)]);
    }
  }
  EXPECT_EQ(wrong, 0) << first_wrong;
  EXPECT_EQ(views_checked, 40);  // odd steps 1, 11, ..., 391
  EXPECT_EQ(views_indexed, 20);  // 11, 31, ..., 391
  EXPECT_EQ(session.read_expert_load().tokens, want_load);
  EXPECT_EQ(session.read_faults().first().code, comm::fault_code::none);
}

TEST(Placement, ATableOneRankGetsWrongFailsEveryRankAndChangesNothing) {
  const sim::problem p = make_problem();
  const int me = mpi().rank(), ep = p.ep_size;
  comm::ep_session session(world_comm(), config_with_table(p));
  session.set_placement(replicated(ep));
  auto rejected = [&](const comm::expert_placement& t, const std::string& fragment) {
    try {
      session.set_placement(t);
      ADD_FAILURE() << "accepted";
    } catch (const comm::error& e) {
      EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
    }
  };
  // One rank passes another (valid) table: every rank throws, naming it.
  rejected(me == ep - 1 ? moved(ep) : replicated(ep), "passed another table than this rank");
  // One rank's table does not fit: it says why, the others name it.
  comm::expert_placement small = replicated(ep);
  small.local_slots = kSlots - 1;
  rejected(me == 0 ? small : replicated(ep), me == 0 ? "placement.local_slots: is 9" : "rank(s) 0 passed a table");
  // Every rank's table puts two experts into one slot.
  comm::expert_placement clash = replicated(ep);
  clash.local_of[1] = clash.local_of[0];
  rejected(clash, "already holds");
  EXPECT_EQ(session.placement().rank_of, replicated(ep).rank_of);  // unchanged
  // And the session still computes the right thing with the table it kept.
  sim::batch_storage buffers(p);
  graph::stream s;
  graph::step_graph step(graph::plan_step(session, sim::zero_copy_step(session, buffers, p)), s);
  EXPECT_EQ(sim::generate_batch(p, me, 5, buffers.inputs(), s.get()), cudaSuccess);
  EXPECT_EQ(step.replay(s), cudaSuccess);
  s.sync();
  const int T = sim::token_count(p, me, 5);
  std::vector<std::uint16_t> host(static_cast<std::size_t>(T) * p.hidden);
  EPG_CHECK_CUDA(cudaMemcpy(host.data(), buffers.output(), host.size() * 2, cudaMemcpyDeviceToHost));
  const comm::expert_placement kept = replicated(ep);
  EXPECT_EQ(sim::count_wrong(p, 5, me, host.data(), &kept), 0);
  // An id that is no logical expert but a valid physical one (num_experts + 1): dispatch records
  // it and sends -1, so no receiver computes that replica's expert for it. Token 0's entry 1.
  std::vector<std::int32_t> ids(static_cast<std::size_t>(p.max_tokens) * p.top_k, -1);
  for (int t = 0; t < T; ++t)
    for (int j = 0; j < p.top_k; ++j) ids[static_cast<std::size_t>(t) * p.top_k + j] = sim::expert_id(p, me, 5, t, j);
  if (T > 0) ids[1] = p.num_experts + 1;
  EXPECT_EQ(sim::generate_batch(p, me, 5, buffers.inputs(), s.get()), cudaSuccess);
  EPG_CHECK_CUDA(cudaMemcpyAsync(buffers.inputs().topk_ids, ids.data(), ids.size() * 4, cudaMemcpyHostToDevice, s.get()));
  EXPECT_EQ(step.replay(s), cudaSuccess);
  s.sync();
  EPG_CHECK_CUDA(cudaMemcpy(host.data(), buffers.output(), host.size() * 2, cudaMemcpyDeviceToHost));
  if (T > 0) {
    EXPECT_EQ(session.read_faults().input.code, comm::fault_code::expert_id_out_of_range);
    // Token 0 is the reference's sum without entry 1 (an owner no rank has); the others as before.
    std::vector<int> experts(static_cast<std::size_t>(p.top_k)), owners(experts.size());
    std::vector<float> weights(experts.size());
    for (int j = 0; j < p.top_k; ++j) {
      experts[static_cast<std::size_t>(j)] = sim::expert_id(p, me, 5, 0, j);
      const std::int32_t id = comm::choose_replica(experts[static_cast<std::size_t>(j)], 0, kept.replica_offsets.data(),
                                                   kept.replica_ids.data());
      owners[static_cast<std::size_t>(j)] = j == 1 ? -1 : kept.rank_of[static_cast<std::size_t>(id)];
      weights[static_cast<std::size_t>(j)] = sim::router_weight(p, me, 5, 0, j);
    }
    const auto round = [&](float v) { return sim::round_to(p.dtype, v); };
    long long token0_wrong = 0;
    for (int h = 0; h < p.hidden; ++h)
      token0_wrong += sim::load_element(p.dtype, &host[static_cast<std::size_t>(h)]) !=
                      sim::expected_output(p, experts.data(), owners.data(), weights.data(),
                                           round(sim::hidden_value(p, me, 5, 0, h)), round);
    EXPECT_EQ(token0_wrong, 0);
    const auto all = sim::expect_output(p, 5, me, &kept);
    long long others_wrong = 0;
    for (std::size_t i = static_cast<std::size_t>(p.hidden); i < all.size(); ++i)
      others_wrong += sim::load_element(p.dtype, &host[i]) != all[i];
    EXPECT_EQ(others_wrong, 0);
  }
  session.clear_input_faults();
  // A session without a table has none to set.
  comm::ep_session plain(world_comm(), sim::make_config(p, 32, 256));
  try {
    plain.set_placement(kept);
    ADD_FAILURE() << "accepted";
  } catch (const comm::error& e) {
    EXPECT_NE(std::string(e.what()).find("expert_slots_per_rank: is 0"), std::string::npos) << e.what();
  }
}

// Steps with table `t` on a session of `config` give exactly the reference results, 20 times.
void expect_exact_steps(const sim::problem& p, const comm::ep_config& config, const comm::expert_placement& t) {
  const int me = mpi().rank();
  comm::ep_session session(world_comm(), config);
  session.set_placement(t);
  sim::batch_storage buffers(p);
  graph::stream s;
  graph::step_graph step(graph::plan_step(session, sim::zero_copy_step(session, buffers, p)), s);
  std::vector<std::uint16_t> host(static_cast<std::size_t>(p.max_tokens) * p.hidden);
  long long wrong = 0;
  for (std::uint64_t k = 0; k < 20; ++k) {
    EXPECT_EQ(sim::generate_batch(p, me, k, buffers.inputs(), s.get()), cudaSuccess);
    EXPECT_EQ(step.replay(s), cudaSuccess);
    s.sync();
    const int T = sim::token_count(p, me, k);
    EPG_CHECK_CUDA(cudaMemcpy(host.data(), buffers.output(), static_cast<std::size_t>(T) * p.hidden * 2,
                              cudaMemcpyDeviceToHost));
    wrong += sim::count_wrong(p, k, me, host.data(), &t);
  }
  EXPECT_EQ(wrong, 0) << config.num_ctas << " CTAs of " << config.threads_per_cta << " threads";
  EXPECT_EQ(session.read_faults().first().code, comm::fault_code::none);
}

// A table too large for dispatch's shared-memory cache (more than max_cached_table_words) is
// read from global memory: the same results. 2052 experts, one spare slot per rank holding a
// replica of expert 0. Also with chunks of several rounds (1 CTA of 64 threads).
TEST(Placement, ATableTooLargeToCacheGivesTheSameResults) {
  sim::problem p = make_problem();
  const int ep = p.ep_size;
  p.num_experts = 2052;  // divisible by 2 and 4
  p.hidden = 256;
  const int per_rank = p.num_experts / ep, slots = per_rank + 1;
  std::vector<std::array<int, 3>> replicas;
  for (int e = 0; e < p.num_experts; ++e) replicas.push_back({e, e / per_rank, e % per_rank});
  for (int rank = 1; rank < ep; ++rank) replicas.push_back({0, rank, per_rank});
  const comm::expert_placement big = table(p.num_experts, replicas, slots);
  for (const auto& [ctas, threads] : {std::pair{32, 256}, std::pair{1, 64}}) {
    comm::ep_config config = sim::make_config(p, ctas, threads);
    config.expert_slots_per_rank = slots;
    ASSERT_GT(2LL * (config.num_experts + config.physical_experts()), kernels::max_cached_table_words);
    expect_exact_steps(p, config, big);
  }
}

// Dispatch with a (cached) table when a CTA's chunk takes several rounds: 300 tokens on 1 CTA of
// 128 threads (3 rounds; the slots read back from global memory at 4 ranks) and on 2 CTAs of 64
// threads (150 tokens, 3 rounds, the slots kept in shared memory).
TEST(Placement, ChunksOfSeveralRoundsGiveTheSameResults) {
  sim::problem p = make_problem();
  p.max_tokens = p.min_tokens = 300;
  for (const auto& [ctas, threads] : {std::pair{1, 128}, std::pair{2, 64}}) {
    comm::ep_config config = sim::make_config(p, ctas, threads);
    config.expert_slots_per_rank = kSlots;
    expect_exact_steps(p, config, replicated(p.ep_size));
  }
}
