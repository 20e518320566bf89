// Reduced-precision combines (issue 15) in whole step graphs: prepare-combine quantizes each
// rank's partial rows to FP8 (or rounds fp32 rows to bf16), combine sums the rows it pulls. The
// output must equal the host reference of exactly that (sim::expect_output of the problem) bit
// for bit, agree with the device check, and stay within the documented error of the exact
// combine; the error is printed for docs/perf-notes.md. Some cases quantize in dispatch too.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "epgraph/comm/device_buffer.hpp"
#include "epgraph/comm/error.hpp"
#include "epgraph/graph/step.hpp"
#include "epgraph/kernels/ops.hpp"
#include "epgraph/sim/device.hpp"
#include "epgraph/sim/reference.hpp"
#include "world.hpp"

using namespace epgraph;
using mpitest::mpi;
using mpitest::world_comm;

namespace {

struct fp8_combine_case {
  std::string name;
  int max_tokens, top_k, experts_per_rank, hidden;
  sim::routing dist = sim::routing::uniform;
  std::uint64_t empty_ranks = 0;
  kernels::combine_precision precision = kernels::combine_precision::fp8;  // bf16: fp32 rows
  bool quantize = false;  // the dispatch quantizes too (fp32 scales)
};
std::ostream& operator<<(std::ostream& o, const fp8_combine_case& c) { return o << c.name; }

class Fp8Combine : public ::testing::TestWithParam<fp8_combine_case> {};

TEST_P(Fp8Combine, EqualsTheFp8ReferenceAndStaysWithinTheErrorOfTheExactCombine) {
  const fp8_combine_case& c = GetParam();
  const int me = mpi().rank();
  sim::problem p = mpitest::problem_on_this_world(c.max_tokens, c.top_k, c.experts_per_rank, c.dist, c.empty_ranks);
  p.hidden = c.hidden;
  p.seed = 2024;
  p.combine = c.precision;
  p.quantize = c.quantize;
  const bool fp8 = c.precision == kernels::combine_precision::fp8;
  if (!fp8) p.dtype = comm::element_type::fp32;
  sim::problem exact_problem = p;  // the same experts' input, the exact combine
  exact_problem.combine = kernels::combine_precision::exact;
  comm::ep_session session(world_comm(), sim::make_config(p, 32, 512));
  sim::batch_storage batch(p);
  comm::device_buffer expert_output(session.layout().combine.bytes), device_wrong(sizeof(unsigned long long));
  EPG_CHECK_CUDA(cudaMemset(device_wrong.get(), 0, sizeof(unsigned long long)));
  graph::step_spec spec;
  spec.dispatch = batch.dispatch_args();
  spec.combine = batch.combine_args();  // carries p.combine
  spec.experts = sim::reference_expert_stage(p);
  spec.expert_output = expert_output.get();
  graph::step_plan plan = graph::plan_step(session, spec);
  EXPECT_NE(plan.explain().find(fp8 ? "quantizing to FP8" : "rounding fp32 to bf16"), std::string::npos)
      << plan.explain();
  graph::stream s;
  graph::step_graph step(plan, s);
  const std::size_t elem = comm::element_size(p.dtype);

  double max_rel = 0, sum_rel = 0, worst_row = 0;
  long long counted = 0;
  for (std::uint64_t n : {1u, 2u, 3u}) {
    SCOPED_TRACE("step " + std::to_string(n));
    ASSERT_EQ(sim::generate_batch(p, me, n, batch.inputs(), s.get()), cudaSuccess);
    ASSERT_EQ(step.replay(s), cudaSuccess);
    ASSERT_EQ(sim::check_output(p, me, n, batch.output(), device_wrong.as<unsigned long long>(), s.get()),
              cudaSuccess);
    s.sync();
    const int T = sim::token_count(p, me, n);
    std::vector<unsigned char> got(std::size_t(T) * p.hidden * elem);
    EPG_CHECK_CUDA(cudaMemcpy(got.data(), batch.output(), got.size(), cudaMemcpyDeviceToHost));
    const auto want = sim::expect_output(p, n, me);
    const auto exact = sim::expect_output(exact_problem, n, me);
    std::vector<float> value(want.size());
    long long wrong = 0;
    for (std::size_t i = 0; i < value.size(); ++i) {
      value[i] = sim::load_element(p.dtype, &got[i * elem]);
      wrong += value[i] != want[i];
    }
    EXPECT_EQ(wrong, 0) << "elements that differ from the reduced-precision reference, of " << value.size();
    // Against the exact combine: per element where the exact value is not tiny against its
    // row, and per row as a norm.
    for (int t = 0; t < T; ++t) {
      const float* e = &exact[std::size_t(t) * p.hidden];
      const float* q = &value[std::size_t(t) * p.hidden];  // the device's output
      double row_max = 0, diff2 = 0, norm2 = 0;
      for (int h = 0; h < p.hidden; ++h) row_max = std::max(row_max, double(std::fabs(e[h])));
      for (int h = 0; h < p.hidden; ++h) {
        const double d = double(q[h]) - e[h];
        diff2 += d * d;
        norm2 += double(e[h]) * e[h];
        if (std::fabs(e[h]) < 1e-2 * row_max) continue;
        const double rel = std::fabs(d) / std::fabs(e[h]);
        max_rel = std::max(max_rel, rel);
        sum_rel += rel;
        ++counted;
      }
      if (norm2 > 0) worst_row = std::max(worst_row, std::sqrt(diff2 / norm2));
    }
  }
  const double mean_rel = counted ? sum_rel / double(counted) : 0;
  std::printf("[rank %d] %s: %s combine against the exact one: max relative error %.4f, mean %.5f over %lld "
              "elements (|exact| >= 1%% of its row's largest), worst row (L2) %.4f\n",
              me, c.name.c_str(), fp8 ? "FP8" : "bf16", max_rel, mean_rel, counted, worst_row);
  // e4m3 rounds to within 2^-4 of a value, bf16 to within 2^-8; a sum of a few such rows stays
  // within that in norm.
  EXPECT_LE(worst_row, fp8 ? 0.0625 : 0.0040);
  EXPECT_LE(mean_rel, fp8 ? 0.04 : 0.0025);
  if (counted > 0) {
    EXPECT_GT(worst_row, 0.0) << "the reduced path must not be the exact one";
  }
  unsigned long long device_count = 1;
  EPG_CHECK_CUDA(cudaMemcpy(&device_count, device_wrong.get(), sizeof device_count, cudaMemcpyDeviceToHost));
  EXPECT_EQ(device_count, 0u) << "the device check disagrees with the host reference";
  EXPECT_EQ(session.read_faults().input.code, comm::fault_code::none);
  session.barrier();
}

// Combine reads what the peers' prepare-combine wrote, so a precision that differs between
// ranks would sum rows of the wrong format: planning throws on every rank instead, naming the
// field and this rank's precision. A small session of `dtype` rows; rank `odd` plans with
// `odd_precision`, the others with `precision`; then `odd_precision` everywhere plans.
void expect_mixed_precisions_rejected(comm::element_type dtype, int odd, kernels::combine_precision odd_precision,
                                      const std::string& odd_name, kernels::combine_precision precision,
                                      const std::string& name) {
  sim::problem p;
  p.ep_size = mpi().size();
  p.max_tokens = 16;
  p.top_k = 2;
  p.num_experts = 4 * p.ep_size;
  p.hidden = 256;
  p.dtype = dtype;
  p.domain_size = mpitest::domain_size();
  comm::ep_session session(world_comm(), sim::make_config(p, 8, 256));
  comm::device_buffer output(std::size_t(p.max_tokens) * p.hidden * comm::element_size(dtype));
  const bool is_odd = mpi().rank() == odd;
  try {
    (void)kernels::combine_op(session, {nullptr, output.get(), dtype, is_odd ? odd_precision : precision});
    ADD_FAILURE() << "accepted on rank " << mpi().rank();
  } catch (const comm::error& e) {
    EXPECT_EQ(e.call(), "combine_args.precision") << e.what();
    EXPECT_NE(std::string(e.what()).find("differs between ranks (this rank: " + (is_odd ? odd_name : name) + ")"),
              std::string::npos)
        << e.what();
  }
  EXPECT_NO_THROW((void)kernels::combine_op(session, {nullptr, output.get(), dtype, odd_precision}));
  session.barrier();
}

TEST(Fp8CombinePlanning, APrecisionThatDiffersBetweenRanksIsRejectedOnEveryRank) {
  expect_mixed_precisions_rejected(comm::element_type::bf16, 0, kernels::combine_precision::fp8, "fp8",
                                   kernels::combine_precision::exact, "exact");
}

// The same for an fp32 session, where exact and bf16 are both valid: one rank's bf16 beside the
// others' exact would read bf16 rows as fp32 ones.
TEST(Fp8CombinePlanning, ABf16PrecisionBesideExactIsRejectedOnEveryRank) {
  expect_mixed_precisions_rejected(comm::element_type::fp32, mpi().size() - 1, kernels::combine_precision::bf16, "bf16",
                                   kernels::combine_precision::exact, "exact");
}

INSTANTIATE_TEST_SUITE_P(
    Routing, Fp8Combine,
    ::testing::Values(fp8_combine_case{"uniform_k8_h7168", 64, 8, 32, 7168},
                      fp8_combine_case{"skewed_k8_h2048", 96, 8, 16, 2048, sim::routing::skewed},
                      fp8_combine_case{"one_rank_k4_h1040", 48, 4, 8, 1040, sim::routing::one_rank},
                      fp8_combine_case{"k1_h512", 128, 1, 4, 512},
                      fp8_combine_case{"odd_ranks_empty_h512", 64, 8, 16, 512, sim::routing::uniform, 0xAAAAAAAAull},
                      fp8_combine_case{"quantized_dispatch_too_k8_h7168", 64, 8, 32, 7168, sim::routing::uniform, 0,
                                       kernels::combine_precision::fp8, true},
                      fp8_combine_case{"bf16_of_fp32_k8_h7168", 64, 8, 32, 7168, sim::routing::uniform, 0,
                                       kernels::combine_precision::bf16},
                      fp8_combine_case{"bf16_of_fp32_skewed_h1032", 96, 8, 16, 1032, sim::routing::skewed, 0,
                                       kernels::combine_precision::bf16},
                      fp8_combine_case{"bf16_of_fp32_one_rank_k4_h256", 48, 4, 8, 256, sim::routing::one_rank, 0,
                                       kernels::combine_precision::bf16}),
    [](const auto& info) { return info.param.name; });

}  // namespace
