// Dispatch and combine against the independent host reference, on every rank.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <random>
#include <sstream>
#include <stdexcept>

#include "epgraph/comm/device_buffer.hpp"
#include "epgraph/comm/error.hpp"
#include "epgraph/graph/step.hpp"
#include "epgraph/sim/device.hpp"
#include "epgraph/sim/reference.hpp"
#include "world.hpp"

using namespace epgraph;
using mpitest::env_or;
using mpitest::mpi;
using mpitest::problem_on_this_world;
using mpitest::world_comm;

namespace {

struct dispatch_case {
  std::string name;
  int max_tokens, top_k, experts_per_rank;
  std::vector<std::size_t> row_bytes;  // opaque payloads
  sim::routing dist = sim::routing::uniform;
  std::uint64_t empty_ranks = 0;
  bool corrupt = false;  // plant an out-of-range id and a -1
  int ctas = 32, threads = 512;
  bool full = false;  // every rank sends max_tokens (else the count is drawn from [0, max_tokens])
  int bad_entry = 0;  // corrupt: the entry of token bad_token that gets the out-of-range id
  int bad_token = 1;
};

std::ostream& operator<<(std::ostream& o, const dispatch_case& c) { return o << c.name; }

// Routing from the sim (host), payload bytes from a pattern; everything uploaded, then
// every received byte, count, id and per-expert count checked against the reference.
void check_dispatch(const dispatch_case& c) {
  const int ep = mpi().size(), me = mpi().rank();
  sim::problem p = problem_on_this_world(c.max_tokens, c.top_k, c.experts_per_rank, c.dist, c.empty_ranks);
  p.seed = 1234;
  if (c.full) p.min_tokens = p.max_tokens;
  comm::ep_config cfg = sim::make_config(p, c.ctas, c.threads);
  cfg.payloads.clear();
  for (std::size_t i = 0; i < c.row_bytes.size(); ++i) cfg.payloads.push_back({std::string("payload").append(std::to_string(i)), c.row_bytes[i]});
  comm::ep_session session(world_comm(), cfg);

  sim::routing_table routes = sim::draw_routing(p, 7);
  if (c.corrupt) {
    for (int src = 0; src < ep; ++src) {
      if (routes.tokens[src] <= c.bad_token) continue;
      routes.ids[src][std::size_t(c.bad_token) * p.top_k + c.bad_entry] = p.num_experts + 3;  // out of range
      routes.ids[src][0 * p.top_k + (p.top_k - 1)] = -1;     // token 0, last entry: no expert
    }
  }
  const int T = routes.tokens[me];
  comm::device_buffer num_tokens(4), ids(std::size_t(p.max_tokens) * p.top_k * 4);
  EPG_CHECK_CUDA(cudaMemcpy(num_tokens.get(), &T, 4, cudaMemcpyHostToDevice));
  if (T) EPG_CHECK_CUDA(cudaMemcpy(ids.get(), routes.ids[me].data(), routes.ids[me].size() * 4, cudaMemcpyHostToDevice));
  std::vector<comm::device_buffer> payloads;
  kernels::dispatch_args args{num_tokens.as<std::int32_t>(), ids.as<std::int32_t>(), {}, std::nullopt};
  for (std::size_t i = 0; i < c.row_bytes.size(); ++i) {
    payloads.emplace_back(std::size_t(p.max_tokens) * c.row_bytes[i]);
    EPG_CHECK_CUDA(sim::fill_pattern(payloads.back().get(), p.max_tokens, c.row_bytes[i], 100 * me + i, nullptr));
    args.payloads.push_back({payloads.back().get(), c.row_bytes[i]});
  }
  kernels::dispatch_op dispatch(session, args);
  kernels::summarize_op summarize(session, /*sanitize_unused_slots=*/true);
  graph::stream s;
  EPG_CHECK_CUDA(cudaDeviceSynchronize());
  ASSERT_EQ(dispatch.run(s.get()), cudaSuccess);
  ASSERT_EQ(summarize.run(s.get()), cudaSuccess);
  s.sync();

  const auto expect = sim::expect_dispatch(p, routes);
  std::vector<std::int32_t> counts(ep);
  EPG_CHECK_CUDA(cudaMemcpy(counts.data(), session.recv_counts(), ep * 4, cudaMemcpyDeviceToHost));
  EXPECT_EQ(counts, expect.counts[me]);
  std::vector<std::int32_t> recv_ids(std::size_t(ep) * p.max_tokens * p.top_k);
  EPG_CHECK_CUDA(cudaMemcpy(recv_ids.data(), session.recv_topk_ids(), recv_ids.size() * 4, cudaMemcpyDeviceToHost));
  std::vector<int> expert_counts(cfg.experts_per_rank(), 0);
  long long id_errors = 0, sanitize_errors = 0;
  for (int src = 0; src < ep; ++src) {
    for (int slot = 0; slot < p.max_tokens; ++slot) {
      const std::int32_t* got = &recv_ids[(std::size_t(src) * p.max_tokens + slot) * p.top_k];
      if (slot < expect.counts[me][src]) {
        const int token = expect.origin[me][src][slot];
        for (int j = 0; j < p.top_k; ++j) {
          const int want = routes.ids[src][std::size_t(token) * p.top_k + j];
          id_errors += got[j] != want;
          if (want >= me * c.experts_per_rank && want < (me + 1) * c.experts_per_rank)
            ++expert_counts[want - me * c.experts_per_rank];
        }
      } else {
        for (int j = 0; j < p.top_k; ++j) sanitize_errors += got[j] != -1;
      }
    }
  }
  EXPECT_EQ(id_errors, 0);
  EXPECT_EQ(sanitize_errors, 0);
  std::vector<std::int32_t> got_expert_counts(cfg.experts_per_rank());
  EPG_CHECK_CUDA(cudaMemcpy(got_expert_counts.data(), session.local_expert_counts(), got_expert_counts.size() * 4,
                            cudaMemcpyDeviceToHost));
  EXPECT_EQ(std::vector<int>(got_expert_counts.begin(), got_expert_counts.end()), expert_counts);

  for (std::size_t i = 0; i < c.row_bytes.size(); ++i) {
    const std::size_t row = c.row_bytes[i];
    std::vector<std::uint8_t> recv(std::size_t(ep) * p.max_tokens * row);
    EPG_CHECK_CUDA(cudaMemcpy(recv.data(), session.recv_payload(int(i)), recv.size(), cudaMemcpyDeviceToHost));
    long long byte_errors = 0;
    for (int src = 0; src < ep; ++src)
      for (int slot = 0; slot < expect.counts[me][src]; ++slot) {
        const int token = expect.origin[me][src][slot];
        const std::uint8_t* got = &recv[(std::size_t(src) * p.max_tokens + slot) * row];
        for (std::size_t b = 0; b < row; ++b) byte_errors += got[b] != sim::pattern_byte(100 * src + i, token, b);
      }
    EXPECT_EQ(byte_errors, 0) << "payload " << i << " (" << row << " bytes per row)";
  }

  const auto fault = session.read_faults().input;
  const bool planted = c.corrupt && T > c.bad_token;
  EXPECT_EQ(fault.code, planted ? comm::fault_code::expert_id_out_of_range : comm::fault_code::none)
      << comm::describe(fault);
  if (planted) {
    EXPECT_EQ(fault.token, c.bad_token);
    EXPECT_EQ(fault.entry, c.bad_entry);
    EXPECT_EQ(fault.value, p.num_experts + 3);
  }
  session.barrier();
}

class Dispatch : public ::testing::TestWithParam<dispatch_case> {};

TEST_P(Dispatch, DeliversEveryRowBitExactToItsDeterministicSlot) { check_dispatch(GetParam()); }

INSTANTIATE_TEST_SUITE_P(
    Routing, Dispatch,
    ::testing::Values(
        dispatch_case{"uniform_k8_bf16_7168", 128, 8, 64, {7168 * 2, 8 * 4}},
        dispatch_case{"fp8_with_fp32_scales", 128, 8, 64, {7168, 7168 / 128 * 4, 8 * 4}},
        dispatch_case{"rows_not_multiple_of_16", 64, 4, 16, {1000, 999, 2, 6}},
        dispatch_case{"all_to_one_rank", 96, 8, 32, {2880 * 2}, sim::routing::one_rank},
        dispatch_case{"skewed", 96, 8, 32, {512}, sim::routing::skewed},
        dispatch_case{"odd_ranks_empty", 64, 8, 32, {4096}, sim::routing::uniform, 0xAAAAAAAAull},
        dispatch_case{"all_ranks_empty", 64, 8, 32, {256}, sim::routing::uniform, ~0ull},
        dispatch_case{"k1", 128, 1, 8, {256}},
        dispatch_case{"k2", 128, 2, 8, {256}},
        dispatch_case{"k4_several_entries_per_rank", 128, 4, 2, {256}},
        dispatch_case{"k16", 128, 16, 32, {256}},
        dispatch_case{"invalid_ids_skipped_and_reported", 64, 8, 32, {512}, sim::routing::uniform, 0, true},
        // A bad id past the first entries: k = 12, the bad id at entry 9, the -1 at entry 11.
        dispatch_case{"invalid_ids_past_the_eighth_entry", 64, 12, 32, {512}, sim::routing::uniform, 0, true, 32, 512,
                      false, 9},
        dispatch_case{"max_tokens_not_multiple_of_ctas", 77, 8, 32, {130}},
        // Experts per rank that are not powers of two: the expert's rank is found by a
        // multiply and shift (fast_divisor), exact only if its magic numbers are right.
        dispatch_case{"experts_per_rank_24_skewed", 128, 8, 24, {7168 * 2, 8 * 4}, sim::routing::skewed},
        dispatch_case{"experts_per_rank_40_k6_bad_ids", 96, 6, 40, {1000, 8 * 4}, sim::routing::uniform, 0, true},
        // Dispatch's routing passes, every rank sending 1100 tokens (skewed, with bad ids): a
        // chunk of more tokens than threads takes several rounds (2 CTAs of 512 threads: 550
        // tokens each, its slots read back from global memory); a one-round chunk whose slots
        // do not all fit in shared memory at 4 ranks (4 CTAs: 275 x 4 > 1024; at 2 ranks they
        // fit); several rounds with the slots in shared memory (8 CTAs of 64 threads: 138
        // tokens, 3 rounds, 276 or 552 slots).
        dispatch_case{"chunks_of_several_rounds", 1100, 8, 32, {256, 8 * 4}, sim::routing::skewed, 0, true, 2, 512, true},
        dispatch_case{"chunks_of_one_round", 1100, 8, 32, {256, 8 * 4}, sim::routing::skewed, 0, true, 4, 512, true},
        dispatch_case{"several_rounds_slots_in_shared_memory", 1100, 8, 32, {256, 8 * 4}, sim::routing::skewed, 0, true,
                      8, 64, true},
        // A grid that does not divide T, and a last CTA with fewer tokens: 65 tokens on 3 CTAs
        // of 64 threads (chunks of 22, 22, 21; one round each).
        dispatch_case{"one_round_chunks_on_3_ctas", 65, 8, 32, {256, 8 * 4}, sim::routing::skewed, 0, true, 3, 64, true},
        // Fewer tokens than warps, so many that the small copies leave no warp for a second
        // slice (device/push_items.hpp): whole rows, and the warps that push one also push
        // small copies after it (8 tokens a CTA of 16 warps; 7 tokens with odd rows of 2-byte
        // vectors and bad ids).
        dispatch_case{"whole_rows_and_small_copies_8_tokens_a_cta", 128, 8, 32, {7168 * 2, 8 * 4},
                      sim::routing::uniform, 0, false, 16, 512, true},
        dispatch_case{"whole_rows_and_small_copies_odd_bytes_7_tokens_a_cta", 100, 8, 32, {2006, 224, 8 * 4},
                      sim::routing::skewed, 0, true, 16, 512, true},
        // At most 32 tokens a warp and 16 warps, warps 0 to 15 of every CTA route them all
        // (dispatch.cu, step 1, tiny): one token on 32 CTAs; 32 tokens on 64 CTAs (CTAs 32 to
        // 63 hold none, the last CTA publishes totals it did not push); 33 tokens (two routing
        // warps); 128 on 64 CTAs (four, a CTA's two tokens in one warp); 100 on 3 CTAs (chunks
        // of 34 that span warps); 128 on one CTA of 4 warps and 17 on one CTA of 2 warps (the
        // chunk offered to claims); 32 on 2 CTAs of 2 warps (both chunks offered: a warp may
        // claim the other CTA's tokens, as timing has it); drawn counts up to 32; 129 tokens
        // (five routing warps); 512 (sixteen, the most); 300 on 5 CTAs (chunks of 60 that span
        // warps); 256 on one CTA of 8 warps (every warp routes, the chunk offered to claims);
        // 513 tokens, the first count past the path. (T = 0 on this path: odd_ranks_empty,
        // all_ranks_empty.) Where several CTAs route, the bad ids lie in the chunk of one other
        // than the first, which alone must report them.
        dispatch_case{"tiny_one_token", 1, 8, 32, {7168 * 2, 8 * 4}, sim::routing::uniform, 0, false, 32, 512, true},
        dispatch_case{"tiny_32_tokens_on_64_ctas", 32, 8, 32, {7168 * 2, 8 * 4}, sim::routing::uniform, 0, false, 64, 512,
                      true},
        dispatch_case{"tiny_32_tokens_on_4_ctas_bad_ids", 32, 8, 32, {2006, 8 * 4}, sim::routing::skewed, 0, true, 4, 512,
                      true, 3, 25},
        dispatch_case{"tiny_33_tokens_two_routing_warps", 33, 8, 32, {7168 * 2, 8 * 4}, sim::routing::uniform, 0, true, 64,
                      512, true, 0, 32},
        dispatch_case{"tiny_128_tokens_four_routing_warps", 128, 8, 32, {7168 * 2, 8 * 4}, sim::routing::skewed, 0, true,
                      64, 512, true, 7, 127},
        dispatch_case{"tiny_100_tokens_on_3_ctas_bad_ids", 100, 8, 32, {1000, 8 * 4}, sim::routing::uniform, 0, true, 3,
                      512, true, 2, 70},
        dispatch_case{"tiny_128_tokens_on_one_cta_of_4_warps", 128, 8, 32, {2006, 8 * 4}, sim::routing::skewed, 0, true, 1,
                      128, true, 4, 90},
        dispatch_case{"tiny_17_tokens_on_one_cta_bad_ids", 17, 6, 40, {1000, 8 * 4}, sim::routing::skewed, 0, true, 1, 64,
                      true, 5, 13},
        dispatch_case{"tiny_claims_across_ctas_32_tokens_on_2_ctas", 32, 8, 32, {7168 * 2, 8 * 4}, sim::routing::skewed, 0,
                      true, 2, 64, true, 1, 20},
        dispatch_case{"tiny_drawn_counts_up_to_32", 32, 8, 32, {7168 * 2, 8 * 4}, sim::routing::skewed, 0, true, 8, 512},
        dispatch_case{"tiny_129_tokens_five_routing_warps", 129, 8, 32, {7168 * 2, 8 * 4}, sim::routing::uniform, 0, true,
                      64, 512, true, 0, 100},
        dispatch_case{"tiny_512_tokens_sixteen_routing_warps", 512, 8, 32, {7168 * 2, 8 * 4}, sim::routing::skewed, 0,
                      true, 64, 512, true, 6, 500},
        dispatch_case{"tiny_300_tokens_on_5_ctas_bad_ids", 300, 8, 32, {2006, 8 * 4}, sim::routing::uniform, 0, true, 5,
                      512, true, 3, 250},
        dispatch_case{"tiny_256_tokens_on_one_cta_of_8_warps", 256, 8, 32, {1000, 8 * 4}, sim::routing::skewed, 0, true, 1,
                      256, true, 1, 200},
        // Fewer tokens than CTAs (tiny, chunks of one token; the other CTAs route every token
        // but push nothing): odd rows of 2-byte vectors, a small copy that is not the last, 40
        // tokens on 48 CTAs (two routing warps), bad ids in token 35's chunk; 5 tokens on 8
        // CTAs of 4 warps.
        dispatch_case{"fewer_tokens_than_ctas_odd_rows_bad_ids", 40, 8, 32, {2006, 224, 8 * 4},
                      sim::routing::skewed, 0, true, 48, 512, true, 2, 35},
        dispatch_case{"five_tokens_on_8_ctas_of_4_warps", 5, 8, 32, {7168 * 2, 8 * 4}, sim::routing::uniform, 0, false,
                      8, 128, true},
        dispatch_case{"just_past_tiny_513_tokens", 513, 8, 32, {7168 * 2, 8 * 4}, sim::routing::uniform, 0, true, 64, 512,
                      true, 0, 512},
        // Claimed chunks (8 tokens per warp and more) beside a fixed one: 47 tokens on 3 CTAs of
        // 2 warps are chunks of 16, 16 and 15, so the first two CTAs offer theirs to claims and
        // the last pushes fixed items (dispatch.cu, step 4; the four cases above claim in every CTA).
        dispatch_case{"claimed_chunks_beside_a_fixed_one", 47, 8, 32, {7168 * 2, 8 * 4}, sim::routing::uniform, 0, false, 3,
                      64, true},
        // Claimed chunks of unequal work, with bad ids: 1024 skewed tokens on 8 CTAs of 2 warps
        // (128 tokens each, all offered); tokens go to 1 to 8 ranks, so CTAs finish their own
        // chunks at different times and claim from each other's (likely, not forced).
        dispatch_case{"claimed_chunks_of_unequal_work", 1024, 8, 32, {7168 * 2, 8 * 4}, sim::routing::skewed, 0, true, 8,
                      64, true}),
    [](const auto& info) { return info.param.name; });

// ---- whole steps: dispatch -> reference experts -> [prepare-combine] -> combine ----------

struct combine_case {
  std::string name;
  int max_tokens, top_k, experts_per_rank, hidden;
  comm::element_type dtype = comm::element_type::bf16;
  sim::routing dist = sim::routing::uniform;
  std::uint64_t empty_ranks = 0;
  int ctas = 48, threads = 512;
  int min_tokens = 0;  // the fewest tokens a rank sends in a step (the count is drawn up to max_tokens)
};
std::ostream& operator<<(std::ostream& o, const combine_case& c) { return o << c.name; }

// Three steps of dispatch -> reference experts -> [prepare-combine] -> combine, with the
// experts writing into the combine region (zero-copy) and elsewhere (staged): every output
// element against the host reference.
void check_steps(const combine_case& c) {
  const int ep = mpi().size(), me = mpi().rank();
  sim::problem p = problem_on_this_world(c.max_tokens, c.top_k, c.experts_per_rank, c.dist, c.empty_ranks);
  p.hidden = c.hidden;
  p.dtype = c.dtype;
  p.min_tokens = c.min_tokens;
  const std::size_t elem = comm::element_size(p.dtype);
  for (bool zero_copy : {true, false}) {
    comm::ep_session session(world_comm(), sim::make_config(p, c.ctas, c.threads));
    sim::batch_storage buffers(p);
    comm::device_buffer staged(zero_copy ? 0 : std::size_t(ep) * p.max_tokens * p.hidden * elem);
    graph::step_spec spec;
    spec.dispatch = buffers.dispatch_args();
    spec.combine = buffers.combine_args();
    spec.experts = sim::reference_expert_stage(p);
    spec.expert_output = zero_copy ? session.combine_region() : staged.get();
    auto plan = graph::plan_step(session, spec);
    EXPECT_EQ(plan.prepare_combine, !zero_copy);
    graph::stream s;
    for (std::uint64_t step = 0; step < 3; ++step) {
      ASSERT_EQ(sim::generate_batch(p, me, step, buffers.inputs(), s.get()), cudaSuccess);
      std::string failed;
      ASSERT_EQ(graph::enqueue(plan, s.get(), &failed), cudaSuccess) << failed;
      s.sync();
      const int T = sim::token_count(p, me, step);
      std::vector<std::uint8_t> host(std::size_t(T) * p.hidden * elem);
      EPG_CHECK_CUDA(cudaMemcpy(host.data(), buffers.output(), host.size(), cudaMemcpyDeviceToHost));
      EXPECT_EQ(sim::count_wrong(p, step, me, host.data()), 0) << (zero_copy ? "zero-copy" : "staged") << " step " << step << " T=" << T;
    }
    EXPECT_EQ(session.read_faults().first().code, comm::fault_code::none);
  }
}

class Combine : public ::testing::TestWithParam<combine_case> {};

TEST_P(Combine, MatchesTheReferenceExactlyInBothVariants) { check_steps(GetParam()); }

INSTANTIATE_TEST_SUITE_P(
    Shapes, Combine,
    ::testing::Values(combine_case{"h7168_bf16_k8", 128, 8, 64, 7168},
                      combine_case{"h2880_bf16_k4", 96, 4, 16, 2880},
                      combine_case{"h1000_fp32_scalar_path", 64, 8, 32, 1000, comm::element_type::fp32},
                      combine_case{"h2048_fp16_k16", 64, 16, 32, 2048, comm::element_type::fp16},
                      combine_case{"k1", 64, 1, 8, 1024}, combine_case{"k2", 64, 2, 8, 1024},
                      combine_case{"one_rank_routing", 64, 8, 32, 1024, comm::element_type::bf16, sim::routing::one_rank},
                      combine_case{"skewed_routing", 64, 8, 32, 1024, comm::element_type::bf16, sim::routing::skewed},
                      combine_case{"rank1_empty", 64, 8, 32, 1024, comm::element_type::bf16, sim::routing::uniform, 0b10},
                      // A grid of at most 512 warps (here 2 CTAs of 256 threads: 16 warps;
                      // tests/unit/test_combine_items.cpp) pulls deeper where rows are whole (T
                      // above half its warps: 9 or more here); with fewer tokens it slices rows
                      // and takes the usual pull in the same kernel. Whole rows in every step
                      // (bf16, and fp32: two 16-byte words per group), sliced rows in every step
                      // (at most 8 tokens), and both (0 to 24 tokens).
                      combine_case{"small_grid_whole_rows_h7168", 160, 8, 64, 7168, comm::element_type::bf16,
                                   sim::routing::uniform, 0, 2, 256, 40},
                      combine_case{"small_grid_whole_rows_fp32_h2880", 96, 8, 32, 2880, comm::element_type::fp32,
                                   sim::routing::uniform, 0, 2, 256, 40},
                      combine_case{"small_grid_sliced_rows_h1024", 8, 8, 32, 1024, comm::element_type::bf16,
                                   sim::routing::uniform, 0, 2, 256, 0},
                      combine_case{"small_grid_skewed_fp16_any_count", 24, 8, 32, 2048, comm::element_type::fp16,
                                   sim::routing::skewed, 0, 2, 256, 0}),
    [](const auto& info) { return info.param.name; });

// ---- shapes no list above names: drawn from a seed ---------------------------------------

// Every rank draws the same cases (same seed, same standard library). EPGRAPH_TEST_SEED and
// EPGRAPH_TEST_DRAWS widen the search. A failure names its seed and draw: the same rank count
// and domain size, that seed and at least draw + 1 draws replay it. Both are parsed strictly
// (env_or), so a typo never runs zero draws and passes.
struct draws {
  std::mt19937_64 gen;
  int between(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(gen); }
  bool chance(double p) { return std::bernoulli_distribution(p)(gen); }
  // Few, some, or many tokens: the one-token path, one-round chunks and several rounds.
  int tokens(int most) { return chance(0.4) ? between(1, 64) : chance(0.7) ? between(65, most / 2) : between(most / 2, most); }
  int row_bytes() {  // odd sizes, 16-byte multiples, and the small copies (ids, weights, scales)
    return chance(0.4) ? between(1, 9000) : chance(0.6) ? 16 * between(1, 1024) : between(1, 64);
  }
  sim::routing dist() {
    const int r = between(0, 5);
    return r == 0 ? sim::routing::one_rank : r <= 2 ? sim::routing::skewed : sim::routing::uniform;
  }
  std::uint64_t empty_ranks(int ep) {  // a non-empty set of ranks, not always all of them
    const std::uint64_t all = ep >= 64 ? ~std::uint64_t{0} : (std::uint64_t{1} << ep) - 1;
    return chance(0.1) ? std::uniform_int_distribution<std::uint64_t>(1, all)(gen) : 0;
  }
  // top_k first, then enough experts per rank for it; the grid of any size the kernels take.
  void shape(int ep, int& top_k, int& experts_per_rank, int& ctas, int& threads) {
    top_k = between(1, 16);
    experts_per_rank = between((top_k + ep - 1) / ep, 64);
    ctas = between(1, 64);
    threads = 32 * between(2, 16);
  }
};

std::string describe(const dispatch_case& c) {
  std::ostringstream o;
  o << c.name << ": max_tokens " << c.max_tokens << (c.full ? " (all sent)" : "") << ", top_k " << c.top_k
    << ", experts/rank " << c.experts_per_rank << ", routing " << sim::to_string(c.dist) << ", empty ranks "
    << c.empty_ranks << (c.corrupt ? ", bad ids" : "") << ", " << c.ctas << " x " << c.threads << ", rows";
  for (auto b : c.row_bytes) o << " " << b;
  return o.str();
}
std::string describe(const combine_case& c) {
  std::ostringstream o;
  o << c.name << ": max_tokens " << c.max_tokens << " (at least " << c.min_tokens << "), top_k " << c.top_k
    << ", experts/rank " << c.experts_per_rank << ", hidden " << c.hidden << " " << comm::to_string(c.dtype)
    << ", routing " << sim::to_string(c.dist) << ", empty ranks " << c.empty_ranks << ", " << c.ctas << " x "
    << c.threads;
  return o.str();
}

TEST(RandomShapes, DispatchAndWholeStepsMatchTheReference) {
  const std::uint64_t seed = env_or("EPGRAPH_TEST_SEED", 1, 0, ~std::uint64_t{0});
  const auto count = static_cast<int>(env_or("EPGRAPH_TEST_DRAWS", 6, 1, 100000));
  const int ep = mpi().size();
  if (mpi().rank() == 0) std::printf("RandomShapes: seed %llu, %d draws\n", static_cast<unsigned long long>(seed), count);
  for (int i = 0; i < count; ++i) {
    draws d{std::mt19937_64(seed * 0x9e3779b97f4a7c15ull + static_cast<std::uint64_t>(i))};
    dispatch_case dc{"seed " + std::to_string(seed) + " draw " + std::to_string(i) + " dispatch", 0, 0, 0, {}};
    d.shape(ep, dc.top_k, dc.experts_per_rank, dc.ctas, dc.threads);
    dc.max_tokens = d.tokens(2000);
    for (int n = d.between(1, 4); n > 0; --n) dc.row_bytes.push_back(static_cast<std::size_t>(d.row_bytes()));
    dc.dist = d.dist();
    dc.empty_ranks = d.empty_ranks(ep);
    dc.corrupt = d.chance(0.2);
    dc.full = d.chance(0.3);

    combine_case cc{"seed " + std::to_string(seed) + " draw " + std::to_string(i) + " step", 0, 0, 0, 0};
    d.shape(ep, cc.top_k, cc.experts_per_rank, cc.ctas, cc.threads);
    cc.max_tokens = d.tokens(600);
    cc.hidden = d.chance(0.5) ? 8 * d.between(1, 1024) : d.between(1, 5000);
    const int type = d.between(0, 2);
    cc.dtype = type == 0 ? comm::element_type::bf16 : type == 1 ? comm::element_type::fp16 : comm::element_type::fp32;
    cc.dist = d.dist();
    cc.empty_ranks = d.empty_ranks(ep);
    cc.min_tokens = d.between(0, cc.max_tokens);

    // A line per draw before it runs: a run cut by a timeout shows the shape it stopped in.
    const std::string dispatch_shape = describe(dc), step_shape = describe(cc);
    if (mpi().rank() == 0) std::printf("%s\n%s\n", dispatch_shape.c_str(), step_shape.c_str());
    std::fflush(stdout);
    SCOPED_TRACE(dispatch_shape);
    check_dispatch(dc);
    SCOPED_TRACE(step_shape);
    check_steps(cc);
    // Every rank stops after the first draw in which any rank failed an expectation: the next
    // would start out of step. (A failed ASSERT leaves its helper early on that rank only; as
    // between the fixed cases above, the ranks then part until a deadline ends the wait.)
    if (!mpitest::all_ok(!::testing::Test::HasFailure())) {
      ADD_FAILURE() << "stopped after draw " << i << " of seed " << seed;
      return;
    }
  }
}

}  // namespace
