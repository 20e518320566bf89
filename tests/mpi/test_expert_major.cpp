// Expert-major permute and un-permute (issue 14) against the host references, on every rank:
// the rows, their order, origins and weights, counts and offsets of both forms; the
// un-permute's sums with and without weights; the combine output; masked overflow and
// repeated experts as recorded faults; the load statistics over 1000 replays. Rows copied or
// indexed (expert_major_spec::copy_rows) in each.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <sstream>

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

sim::problem make_problem(int top_k, sim::routing dist, int experts_per_rank = 8, int max_tokens = 100) {
  sim::problem p;
  p.ep_size = mpi().size();
  p.max_tokens = max_tokens;  // 100: three chunks of 32 receive slots per source and a partial one
  p.top_k = top_k;
  p.num_experts = experts_per_rank * p.ep_size;
  if (p.num_experts < top_k) p.num_experts = top_k * p.ep_size;
  p.hidden = 2056;  // 4112-byte bf16 rows: three copy segments (the last partial), 16-byte vectors
  p.seed = 4242 + static_cast<std::uint64_t>(top_k);
  p.dist = dist;
  p.domain_size = mpitest::domain_size();
  return p;
}

template <class T>
std::vector<T> to_host(const void* device, std::size_t count) {
  std::vector<T> host(count);
  EPG_CHECK_CUDA(cudaMemcpy(host.data(), device, count * sizeof(T), cudaMemcpyDeviceToHost));
  return host;
}

// One planned expert-major step of a problem, run eagerly (enqueue) so every buffer can be read.
struct expert_major_step {
  sim::problem p;
  comm::ep_session& session;
  sim::batch_storage batch;
  graph::step_plan plan;
  graph::expert_stage_io seen;  // what the expert stage was given (its view)

  expert_major_step(const sim::problem& problem, comm::ep_session& s, comm::expert_major_spec spec, bool weighted,
                    graph::expert_stage experts = {})
      : p(problem), session(s), batch(problem) {
    graph::step_spec step;
    step.dispatch = batch.dispatch_args();
    step.combine = batch.combine_args();
    step.expert_major = kernels::permute_args{spec, 1};  // make_config: payload 1 = the router weights
    step.unpermute_weighted = weighted;
    graph::expert_stage inner = experts ? experts : sim::reference_expert_stage(p);
    step.experts = [this, inner](const graph::expert_stage_io& io, cudaStream_t st) {
      seen = io;
      return inner(io, st);
    };
    plan = graph::plan_step(session, step);
  }
  void run(std::uint64_t step, const std::vector<std::int32_t>* ids = nullptr) {
    graph::stream s;
    ASSERT_EQ(sim::generate_batch(p, mpi().rank(), step, batch.inputs(), s.get()), cudaSuccess);
    if (ids)
      EPG_CHECK_CUDA(cudaMemcpyAsync(batch.inputs().topk_ids, ids->data(), ids->size() * sizeof(std::int32_t),
                                     cudaMemcpyHostToDevice, s.get()));
    ASSERT_EQ(graph::enqueue(plan, s.get()), cudaSuccess);
    s.sync();
  }
  const kernels::expert_major_view& view() const { return *seen.expert_major; }
};

// Compares this rank's expert-major view after step `step` with expect_expert_major; returns
// a description of the first difference, or "".
std::string compare_view(const expert_major_step& f, const sim::routing_table& routes, std::uint64_t step) {
  const sim::problem& p = f.p;
  const int me = mpi().rank();
  const kernels::expert_major_view& v = f.view();
  const auto want = sim::expect_expert_major(p, routes, comm::default_placement(f.session.config()), me);
  const sim::dispatch_expectation sent = sim::expect_dispatch(p, routes);
  const auto counts = to_host<std::int32_t>(v.counts, static_cast<std::size_t>(v.local_slots));
  const auto offsets = to_host<std::int64_t>(v.offsets, static_cast<std::size_t>(v.local_slots) + 1);
  const auto origins = to_host<std::int32_t>(v.origins, 3 * v.rows);
  const auto weights = to_host<float>(v.weights, v.rows);
  // Copied rows, or (receive_rows) the receive buffers, read through each row's index.
  const bool gathered = v.receive_rows != nullptr;
  if (gathered != v.payloads.empty()) return "receive_rows and copied payloads: exactly one of them";
  const std::size_t inputs = gathered ? static_cast<std::size_t>(p.ep_size) * p.max_tokens : v.rows;
  const auto receive_rows = gathered ? to_host<std::int32_t>(v.receive_rows, v.rows) : std::vector<std::int32_t>{};
  const auto hidden = to_host<std::uint16_t>(gathered ? f.seen.recv_payloads[0] : v.payloads[0], inputs * p.hidden);
  // the weights payload, permuted too (or gathered)
  const auto weight_rows = to_host<float>(gathered ? f.seen.recv_payloads[1] : v.payloads[1], inputs * p.top_k);
  const bool masked = v.form == comm::expert_major_form::masked;
  const auto want_offsets = sim::packed_offsets(want);
  std::ostringstream err;
  for (int s = 0; s < v.local_slots; ++s) {
    const auto& rows = want[static_cast<std::size_t>(s)];
    if (counts[s] != static_cast<int>(rows.size())) return (err << "slot " << s << ": count " << counts[s] << ", want " << rows.size(), err.str());
    const std::int64_t start = masked ? static_cast<std::int64_t>(s) * static_cast<std::int64_t>(v.capacity) : want_offsets[s];
    if (offsets[s] != start) return (err << "slot " << s << ": offset " << offsets[s] << ", want " << start, err.str());
    for (std::size_t i = 0; i < rows.size(); ++i) {
      const std::size_t r = static_cast<std::size_t>(start) + i;
      const sim::expert_row& w = rows[i];
      if (origins[3 * r] != w.src || origins[3 * r + 1] != w.slot || origins[3 * r + 2] != w.entry)
        return (err << "slot " << s << " row " << i << ": origin (" << origins[3 * r] << ", " << origins[3 * r + 1] << ", "
                    << origins[3 * r + 2] << "), want (" << w.src << ", " << w.slot << ", " << w.entry << ")",
                err.str());
      const int token = sent.origin[static_cast<std::size_t>(me)][static_cast<std::size_t>(w.src)][static_cast<std::size_t>(w.slot)];
      if (weights[r] != sim::router_weight(p, w.src, step, token, w.entry))
        return (err << "slot " << s << " row " << i << ": weight " << weights[r], err.str());
      if (gathered && receive_rows[r] != w.src * p.max_tokens + w.slot)
        return (err << "slot " << s << " row " << i << ": receive row " << receive_rows[r] << ", want "
                    << w.src * p.max_tokens + w.slot,
                err.str());
      const std::size_t x = gathered ? static_cast<std::size_t>(receive_rows[r]) : r;  // the row's input
      for (int j = 0; j < p.top_k; ++j)
        if (weight_rows[x * p.top_k + j] != sim::router_weight(p, w.src, step, token, j))
          return (err << "slot " << s << " row " << i << ": weights payload entry " << j, err.str());
      for (int h = 0; h < p.hidden; ++h) {
        std::uint16_t bits = 0;
        sim::store_element(p.dtype, sim::hidden_value(p, w.src, step, token, h), &bits);
        if (hidden[x * p.hidden + h] != bits)
          return (err << "slot " << s << " row " << i << ": hidden element " << h << " differs", err.str());
      }
    }
  }
  if (!masked && offsets[v.local_slots] != want_offsets.back())
    return (err << "end offset " << offsets[v.local_slots] << ", want " << want_offsets.back(), err.str());
  return {};
}

long long wrong_outputs(const expert_major_step& f, std::uint64_t step) {
  const int T = sim::token_count(f.p, mpi().rank(), step);
  std::vector<std::uint16_t> host(static_cast<std::size_t>(T) * f.p.hidden);
  EPG_CHECK_CUDA(cudaMemcpy(host.data(), f.batch.output(), host.size() * 2, cudaMemcpyDeviceToHost));
  return sim::count_wrong(f.p, step, mpi().rank(), host.data());
}

}  // namespace

// Every routing, k from 1 to 32, one and eight experts per rank, both forms, rows copied or
// indexed (copy_rows), small layouts (place sums the counts itself: 72 slots take three rounds
// of 32, and 64 slots at 256 tokens are 32 chunks x 64 = 2048 counts at np 4, both bounds) and
// larger ones (CUB's scan: 600 tokens are 38 or more chunks; 72 slots at 256 tokens exceed the
// counts at np 4, 136 slots the slots): the view (the hidden rows and the weights payload, or each row's receive
// index) is the reference's, row for row and byte for byte, and the weighted un-permute makes
// combine's output exact (the reference expert stage gathers through receive_rows).
TEST(ExpertMajorStep, TheViewAndTheOutputMatchTheReferenceForEveryRoutingKAndForm) {
  struct shape {
    int k, experts_per_rank, max_tokens = 100;
  };
  for (shape sh : {shape{1, 8}, shape{4, 8}, shape{8, 8}, shape{16, 8}, shape{32, 8}, shape{1, 1}, shape{8, 8, 600},
                   shape{4, 1, 600}, shape{8, 72}, shape{8, 64, 256}, shape{8, 72, 256}, shape{4, 136}}) {
    const int k = sh.k;
    sim::problem base = make_problem(k, sim::routing::uniform, sh.experts_per_rank, sh.max_tokens);
    comm::ep_session session(world_comm(), sim::make_config(base, 32, 256));
    for (sim::routing dist : {sim::routing::uniform, sim::routing::skewed, sim::routing::one_rank}) {
      for (comm::expert_major_form form : {comm::expert_major_form::packed, comm::expert_major_form::masked}) {
        for (bool copy_rows : {true, false}) {
          sim::problem p = base;
          p.dist = dist;
          comm::expert_major_spec spec;
          spec.form = form;
          spec.weights = true;
          spec.copy_rows = copy_rows;
          expert_major_step f(p, session, spec, true);
          for (std::uint64_t step : {3u, 4u}) {
            SCOPED_TRACE("k " + std::to_string(k) + ", " + std::to_string(p.num_experts / p.ep_size) +
                         " experts per rank, max_tokens " + std::to_string(p.max_tokens) + ", " + std::string(sim::to_string(dist)) + ", " +
                         (form == comm::expert_major_form::masked ? "masked" : "packed") +
                         (copy_rows ? ", rows copied" : ", rows indexed") + ", step " + std::to_string(step));
            f.run(step);
            EXPECT_EQ(f.view().receive_rows != nullptr, !copy_rows);  // the view the spec asked for
            EXPECT_EQ(compare_view(f, sim::draw_routing(p, step), step), "");
            EXPECT_EQ(wrong_outputs(f, step), 0);
            // Indexed rows are the receive buffers, which a peer's next dispatch may overwrite as
            // soon as this rank has entered combine: no rank runs on until every rank has read them.
            mpi().barrier();
          }
          EXPECT_EQ(session.read_faults().first().code, comm::fault_code::none);
        }
      }
    }
  }
}

// The un-permute against its host reference, weighted and not: the combine region holds, per
// received token, its rows in ascending entry order (times their weights), summed in fp32,
// rounded once. The expert stage writes rows of widely spread magnitudes, so a sum in another
// order or with another rounding differs. Two sizes: 100 tokens a rank (a warp per 1 KB segment
// of a row), and 2048 full ones (2056-element rows: 5 segments). There the un-permute grid is
// what the GPU holds at once (3168 warps on 132 SMs), so its warps take spans of several
// segments: 3 (unpermute_max_span), the row's last span 2 (v34).
static void check_unpermute(int max_tokens) {
  sim::problem p = make_problem(8, sim::routing::skewed, 8, max_tokens);  // several local experts per token
  if (max_tokens > 100) p.min_tokens = p.max_tokens;
  comm::ep_session session(world_comm(), sim::make_config(p, 32, 256));
  const int me = mpi().rank();
  std::vector<std::uint16_t> spread;  // bf16 rows: (1 + m / 128) * 2^e, e in [-12, 12], either sign
  auto spread_rows = [&](const graph::expert_stage_io& io, cudaStream_t st) {
    spread.resize(io.expert_major->rows * static_cast<std::size_t>(p.hidden));
    for (std::size_t i = 0; i < spread.size(); ++i) {
      const std::uint32_t h = sim::mix(i * 0x9e3779b97f4a7c15ull + 77);
      const float x = std::ldexp(1.0f + static_cast<float>(h % 128) / 128.0f, static_cast<int>((h >> 7) % 25) - 12);
      sim::store_element(p.dtype, (h >> 12) & 1 ? -x : x, &spread[i]);
    }
    return cudaMemcpyAsync(io.expert_major->output, spread.data(), spread.size() * 2, cudaMemcpyHostToDevice, st);
  };
  for (bool weighted : {true, false}) {
    SCOPED_TRACE(weighted ? "weighted" : "unweighted");
    expert_major_step f(p, session, {}, weighted, spread_rows);
    const std::uint64_t step = 11;
    f.run(step);
    const sim::routing_table routes = sim::draw_routing(p, step);
    const auto rows = sim::expect_expert_major(p, routes, comm::default_placement(session.config()), me);
    const sim::dispatch_expectation sent = sim::expect_dispatch(p, routes);
    const kernels::expert_major_view& v = f.view();
    const auto offsets = sim::packed_offsets(rows);
    const auto out_bits = to_host<std::uint16_t>(v.output, static_cast<std::size_t>(offsets.back()) * p.hidden);
    std::vector<std::vector<std::vector<float>>> expert_out(rows.size());
    for (std::size_t s = 0; s < rows.size(); ++s)
      for (std::size_t i = 0; i < rows[s].size(); ++i) {
        std::vector<float> row(static_cast<std::size_t>(p.hidden));
        for (int h = 0; h < p.hidden; ++h)
          row[static_cast<std::size_t>(h)] = sim::load_element(
              p.dtype, &out_bits[(static_cast<std::size_t>(offsets[s]) + i) * p.hidden + static_cast<std::size_t>(h)]);
        expert_out[s].push_back(std::move(row));
      }
    std::vector<int> received(static_cast<std::size_t>(p.ep_size));
    for (int src = 0; src < p.ep_size; ++src)
      received[static_cast<std::size_t>(src)] = sent.counts[static_cast<std::size_t>(me)][static_cast<std::size_t>(src)];
    auto weight = [&](int src, int slot, int entry) {
      const int token = sent.origin[static_cast<std::size_t>(me)][static_cast<std::size_t>(src)][static_cast<std::size_t>(slot)];
      return sim::router_weight(p, src, step, token, entry);
    };
    const auto want = sim::expect_unpermute(rows, expert_out, received, p.hidden, weighted, weight, p.dtype);
    const std::size_t region_rows = static_cast<std::size_t>(p.ep_size) * p.max_tokens;
    const auto combine_bits = to_host<std::uint16_t>(session.combine_region(), region_rows * p.hidden);
    long long wrong = 0, checked = 0;
    for (int src = 0; src < p.ep_size; ++src)
      for (int slot = 0; slot < received[static_cast<std::size_t>(src)]; ++slot)
        for (int h = 0; h < p.hidden; ++h, ++checked) {
          const float got = sim::load_element(
              p.dtype, &combine_bits[(static_cast<std::size_t>(src) * p.max_tokens + slot) * p.hidden + h]);
          wrong += got != want[static_cast<std::size_t>(src)][static_cast<std::size_t>(slot)][static_cast<std::size_t>(h)];
        }
    EXPECT_EQ(wrong, 0) << "of " << checked;
    EXPECT_GT(checked, 0);
  }
}

TEST(ExpertMajorStep, TheUnpermuteSumsARowsOutputsInEntryOrderWithAndWithoutWeights) {
  for (int max_tokens : {100, 2048}) {
    SCOPED_TRACE("max_tokens " + std::to_string(max_tokens));
    check_unpermute(max_tokens);
  }
}

// A masked capacity smaller than a slot's rows drops the rest and says so with the count; the
// rows that fit are the first ones in order (with their receive index when rows are indexed),
// and nothing is written past a slot.
TEST(ExpertMajorStep, AMaskedSlotOverItsCapacityDropsRowsAsARecordedFault) {
  const int me = mpi().rank();
  for (int max_tokens : {100, 600}) {  // a small layout and CUB's scan
    for (bool copy_rows : {true, false}) {
      SCOPED_TRACE(std::string(copy_rows ? "rows copied" : "rows indexed") + ", max_tokens " + std::to_string(max_tokens));
      sim::problem p = make_problem(8, sim::routing::skewed, 8, max_tokens);
      p.min_tokens = p.max_tokens;  // full batches: the skewed slots overflow for sure
      comm::ep_session session(world_comm(), sim::make_config(p, 32, 256));  // fresh: its fault is this mode's
      comm::expert_major_spec spec;
      spec.form = comm::expert_major_form::masked;
      spec.capacity = 5;
      spec.weights = true;
      spec.copy_rows = copy_rows;
      expert_major_step f(p, session, spec, true);
      const std::uint64_t step = 5;
      f.run(step);
      const auto want = sim::expect_expert_major(p, sim::draw_routing(p, step), comm::default_placement(session.config()), me);
      const kernels::expert_major_view& v = f.view();
      EXPECT_EQ(v.receive_rows != nullptr, !copy_rows);
      const auto counts = to_host<std::int32_t>(v.counts, static_cast<std::size_t>(v.local_slots));
      const auto demand = to_host<std::int32_t>(v.demand, static_cast<std::size_t>(v.local_slots));
      const auto origins = to_host<std::int32_t>(v.origins, 3 * v.rows);
      const auto weights = to_host<float>(v.weights, v.rows);
      const auto receive_rows = v.receive_rows ? to_host<std::int32_t>(v.receive_rows, v.rows) : std::vector<std::int32_t>{};
      const sim::dispatch_expectation sent = sim::expect_dispatch(p, sim::draw_routing(p, step));
      bool over = false;
      std::uint64_t dropped = 0;
      for (int s = 0; s < v.local_slots; ++s) {
        const auto& rows = want[static_cast<std::size_t>(s)];
        EXPECT_EQ(counts[s], std::min<int>(static_cast<int>(rows.size()), 5)) << "slot " << s;
        EXPECT_EQ(demand[s], static_cast<int>(rows.size())) << "slot " << s;
        over = over || rows.size() > 5;
        dropped += rows.size() > 5 ? rows.size() - 5 : 0;
        for (int i = 0; i < 5; ++i) {  // the kept rows in order; a fresh buffer's zeros past the count
          const std::size_t r = static_cast<std::size_t>(s) * 5 + static_cast<std::size_t>(i);
          const bool kept = i < counts[s];
          const sim::expert_row* w = kept ? &rows[static_cast<std::size_t>(i)] : nullptr;
          EXPECT_EQ(origins[3 * r], w ? w->src : 0) << "slot " << s << " row " << i;
          EXPECT_EQ(origins[3 * r + 1], w ? w->slot : 0) << "slot " << s << " row " << i;
          EXPECT_EQ(origins[3 * r + 2], w ? w->entry : 0) << "slot " << s << " row " << i;
          const int token = w ? sent.origin[static_cast<std::size_t>(me)][static_cast<std::size_t>(w->src)][static_cast<std::size_t>(w->slot)] : 0;
          EXPECT_EQ(weights[r], w ? sim::router_weight(p, w->src, step, token, w->entry) : 0.0f) << "slot " << s << " row " << i;
          if (!receive_rows.empty()) {  // (empty when the view is not indexed: the EXPECT above failed)
            EXPECT_EQ(receive_rows[r], w ? w->src * p.max_tokens + w->slot : 0) << "slot " << s << " row " << i;
          }
        }
      }
      EXPECT_EQ(to_host<std::uint64_t>(v.dropped, 1)[0], dropped);
      const comm::fault_record fault = session.read_faults().input;
      if (over) {
        EXPECT_EQ(fault.code, comm::fault_code::expert_rows_over_capacity);
        const bool slot_named = fault.entry >= 0 && fault.entry < v.local_slots;  // no ASSERT: all_ok follows
        EXPECT_TRUE(slot_named) << fault.entry;
        if (slot_named) {
          EXPECT_EQ(fault.value, static_cast<int>(want[static_cast<std::size_t>(fault.entry)].size()) - 5);
        }
      } else {
        EXPECT_EQ(fault.code, comm::fault_code::none);
      }
      // check_faults: every rank throws, with the text that says what to change.
      const bool any_over = !mpitest::all_ok(!over);
      EXPECT_TRUE(any_over) << "the skewed routing overflowed no rank's slot";
      try {
        session.check_faults();
        ADD_FAILURE() << "check_faults did not throw";
      } catch (const comm::error& e) {
        EXPECT_NE(std::string(e.what()).find("raise expert_major_spec.capacity"), std::string::npos) << e.what();
      }
    }
  }
}

// A token that names one local expert twice: the repeat gives no row and is recorded (source,
// receive slot, entry, expert); the other rows are as the reference says, copied or indexed.
TEST(ExpertMajorStep, ARepeatedExpertGivesNoRowAndIsRecorded) {
  sim::problem p = make_problem(4, sim::routing::uniform);
  comm::ep_session session(world_comm(), sim::make_config(p, 32, 256));
  for (bool copy_rows : {true, false}) {
    SCOPED_TRACE(copy_rows ? "rows copied" : "rows indexed");
    comm::expert_major_spec spec;
    spec.weights = true;
    spec.copy_rows = copy_rows;
    expert_major_step f(p, session, spec, true);
    const std::uint64_t step = 9;
    sim::routing_table routes = sim::draw_routing(p, step);
    // Every rank's token 0 (if it has one) names its first expert again in entry 2.
    for (int src = 0; src < p.ep_size; ++src)
      if (routes.tokens[static_cast<std::size_t>(src)] > 0) routes.ids[static_cast<std::size_t>(src)][2] = routes.ids[static_cast<std::size_t>(src)][0];
    std::vector<std::int32_t> mine = routes.ids[static_cast<std::size_t>(mpi().rank())];
    mine.resize(static_cast<std::size_t>(p.max_tokens) * p.top_k, -1);
    f.run(step, &mine);
    EXPECT_EQ(f.view().receive_rows != nullptr, !copy_rows);
    EXPECT_EQ(compare_view(f, routes, step), "");
    mpi().barrier();  // indexed rows are the receive buffers: read before any peer dispatches again
    // The rank owning a token 0's first expert saw the repeat.
    bool should_see = false;
    for (int src = 0; src < p.ep_size; ++src)
      should_see = should_see || (routes.tokens[static_cast<std::size_t>(src)] > 0 &&
                                  sim::owner_rank(p, routes.ids[static_cast<std::size_t>(src)][0]) == mpi().rank());
    const comm::fault_record fault = session.read_faults().input;
    if (should_see) {
      EXPECT_EQ(fault.code, comm::fault_code::expert_repeated);
      EXPECT_EQ(fault.token, 0);
      EXPECT_EQ(fault.entry, 2);
    } else {
      EXPECT_EQ(fault.code, comm::fault_code::none);
    }
    session.clear_input_faults();
    EXPECT_EQ(session.read_faults().input.code, comm::fault_code::none);  // the next mode starts clean
  }
}

// Captured once, replayed 1000 times with fresh routing and batch sizes: every output exact,
// checked on the device; the load statistics equal the reference's sum over the steps. Rows
// copied, and indexed (the reference expert stage gathers from the receive buffers inside the
// graph).
TEST(ExpertMajorStep, ThousandReplaysExactWithLoadStatistics) {
  sim::problem p = make_problem(8, sim::routing::skewed);
  comm::ep_session session(world_comm(), sim::make_config(p, 32, 256));
  for (bool copy_rows : {true, false}) {
    SCOPED_TRACE(copy_rows ? "rows copied" : "rows indexed");
    session.reset_expert_load();
    comm::expert_major_spec spec;
    spec.copy_rows = copy_rows;
    expert_major_step f(p, session, spec, true);
    graph::stream s;
    graph::step_graph graph(f.plan, s);
    EXPECT_TRUE(f.seen.expert_major.has_value());  // the capture ran the stage: its view is the one asked for
    if (f.seen.expert_major) {
      EXPECT_EQ(f.view().receive_rows != nullptr, !copy_rows);
    }
    comm::device_buffer wrong(sizeof(unsigned long long));
    EPG_CHECK_CUDA(cudaMemset(wrong.get(), 0, wrong.bytes()));
    const int me = mpi().rank();
    const comm::expert_placement placement = comm::default_placement(session.config());
    std::vector<std::uint64_t> want_tokens(static_cast<std::size_t>(placement.local_slots), 0);
    std::uint64_t want_received = 0;
    for (std::uint64_t step = 0; step < 1000; ++step) {
      // EXPECT, not ASSERT: a rank that left the loop would leave its peers mid-replay.
      EXPECT_EQ(sim::generate_batch(p, me, step, f.batch.inputs(), s.get()), cudaSuccess);
      EXPECT_EQ(graph.replay(s), cudaSuccess);
      EXPECT_EQ(sim::check_output(p, me, step, f.batch.output(), wrong.as<unsigned long long>(), s.get()), cudaSuccess);
      const auto rows = sim::expect_expert_major(p, sim::draw_routing(p, step), placement, me);
      int received = 0;
      for (std::size_t sl = 0; sl < rows.size(); ++sl) want_tokens[sl] += rows[sl].size();
      const sim::dispatch_expectation sent = sim::expect_dispatch(p, sim::draw_routing(p, step));
      for (int src = 0; src < p.ep_size; ++src) received += sent.counts[static_cast<std::size_t>(me)][static_cast<std::size_t>(src)];
      want_received += static_cast<std::uint64_t>(received);
      if (step % 100 == 99) s.sync();
    }
    s.sync();
    EXPECT_EQ(to_host<unsigned long long>(wrong.get(), 1)[0], 0u);
    const comm::ep_session::expert_load load = session.read_expert_load();
    EXPECT_EQ(load.tokens, want_tokens);
    EXPECT_EQ(load.received, want_received);
    session.reset_expert_load();
    EXPECT_EQ(session.read_expert_load().received, 0u);
    EXPECT_EQ(session.read_faults().first().code, comm::fault_code::none);
  }
}
