// The quantizing dispatch (issue 15) on every rank: each received row's e4m3 codes and block
// scales are the independent host quantizer's bytes for the source token's bf16 row, the other
// payloads and the ids arrive as in a plain dispatch; two steps with new routing and new rows
// through the same planned op.
#include <gtest/gtest.h>

#include <cstring>

#include "epgraph/comm/device_buffer.hpp"
#include "epgraph/comm/error.hpp"
#include "epgraph/graph/cuda_raii.hpp"
#include "epgraph/kernels/ops.hpp"
#include "epgraph/sim/device.hpp"
#include "epgraph/sim/fp8_reference.hpp"
#include "epgraph/sim/reference.hpp"
#include "world.hpp"

using namespace epgraph;
using mpitest::mpi;
using mpitest::world_comm;
namespace fp8 = epgraph::kernels::fp8;

namespace {

struct fp8_case {
  std::string name;
  int max_tokens, top_k, experts_per_rank, hidden;
  fp8::scale_format scales = fp8::scale_format::fp32;
  sim::routing dist = sim::routing::uniform;
  std::uint64_t empty_ranks = 0;
  int ctas = 32;
  int min_tokens = 0;   // with few CTAs: every CTA has at least as many tokens as warps (whole tokens)
  bool placed = false;  // the session keeps a placement table (the contiguous one)
};
std::ostream& operator<<(std::ostream& o, const fp8_case& c) { return o << c.name; }

class QuantizingDispatch : public ::testing::TestWithParam<fp8_case> {};

std::uint64_t row_seed(int src, std::uint64_t step) { return 1000 * step + static_cast<std::uint64_t>(src); }

TEST_P(QuantizingDispatch, DeliversTheHostQuantizersBytesForEveryRow) {
  const fp8_case& c = GetParam();
  const int ep = mpi().size(), me = mpi().rank();
  const bool ue8m0 = c.scales == fp8::scale_format::ue8m0;
  sim::problem p = mpitest::problem_on_this_world(c.max_tokens, c.top_k, c.experts_per_rank, c.dist, c.empty_ranks);
  p.hidden = c.hidden;
  p.min_tokens = c.min_tokens;
  p.seed = 4321;
  const int blocks = fp8::blocks_of(c.hidden);
  const std::size_t scale_row = std::size_t(blocks) * (ue8m0 ? 1 : 4), extra_row = 24;
  comm::ep_config cfg = sim::make_config(p, c.ctas, 512);
  cfg.payloads = {{"codes", std::size_t(c.hidden)}, {"extra", extra_row}, {"scales", scale_row}};
  if (c.placed) cfg.expert_slots_per_rank = cfg.experts_per_rank();
  comm::ep_session session(world_comm(), cfg);

  comm::device_buffer num_tokens(4), ids(std::size_t(p.max_tokens) * p.top_k * 4),
      rows(std::size_t(p.max_tokens) * c.hidden * 2), extra(std::size_t(p.max_tokens) * extra_row);
  kernels::dispatch_args args{num_tokens.as<std::int32_t>(), ids.as<std::int32_t>(),
                              {{}, {extra.get(), extra_row}, {}},
                              kernels::fp8_dispatch{rows.get(), 0, 2, c.scales}};
  kernels::dispatch_op dispatch(session, args);
  graph::stream s;

  for (std::uint64_t step : {3u, 4u}) {
    SCOPED_TRACE("step " + std::to_string(step));
    const sim::routing_table routes = sim::draw_routing(p, step);
    const int T = routes.tokens[me];
    std::vector<std::uint16_t> input;
    for (int t = 0; t < p.max_tokens; ++t) {
      const auto row = sim::bf16_test_row(c.hidden, row_seed(me, step), t);
      input.insert(input.end(), row.begin(), row.end());
    }
    EPG_CHECK_CUDA(cudaMemcpy(num_tokens.get(), &T, 4, cudaMemcpyHostToDevice));
    if (T) EPG_CHECK_CUDA(cudaMemcpy(ids.get(), routes.ids[me].data(), routes.ids[me].size() * 4, cudaMemcpyHostToDevice));
    EPG_CHECK_CUDA(cudaMemcpy(rows.get(), input.data(), input.size() * 2, cudaMemcpyHostToDevice));
    EPG_CHECK_CUDA(sim::fill_pattern(extra.get(), p.max_tokens, extra_row, 100 * me + step, nullptr));
    EPG_CHECK_CUDA(cudaDeviceSynchronize());
    ASSERT_EQ(dispatch.run(s.get()), cudaSuccess);
    s.sync();

    const auto expect = sim::expect_dispatch(p, routes);
    std::vector<std::int32_t> counts(ep);
    EPG_CHECK_CUDA(cudaMemcpy(counts.data(), session.recv_counts(), ep * 4, cudaMemcpyDeviceToHost));
    EXPECT_EQ(counts, expect.counts[me]);
    const std::size_t slots = std::size_t(ep) * p.max_tokens;
    std::vector<std::uint8_t> codes(slots * c.hidden), scales(slots * scale_row), got_extra(slots * extra_row);
    std::vector<std::int32_t> got_ids(slots * p.top_k);
    EPG_CHECK_CUDA(cudaMemcpy(codes.data(), session.recv_payload(0), codes.size(), cudaMemcpyDeviceToHost));
    EPG_CHECK_CUDA(cudaMemcpy(got_extra.data(), session.recv_payload(1), got_extra.size(), cudaMemcpyDeviceToHost));
    EPG_CHECK_CUDA(cudaMemcpy(scales.data(), session.recv_payload(2), scales.size(), cudaMemcpyDeviceToHost));
    EPG_CHECK_CUDA(cudaMemcpy(got_ids.data(), session.recv_topk_ids(), got_ids.size() * 4, cudaMemcpyDeviceToHost));

    long long code_errors = 0, scale_errors = 0, extra_errors = 0, id_errors = 0, rows_checked = 0;
    for (int src = 0; src < ep; ++src)
      for (int slot = 0; slot < expect.counts[me][src]; ++slot) {
        const int token = expect.origin[me][src][slot];
        const std::size_t r = std::size_t(src) * p.max_tokens + slot;
        const auto bits = sim::bf16_test_row(c.hidden, row_seed(src, step), token);
        std::vector<float> row(bits.size());
        for (std::size_t i = 0; i < bits.size(); ++i) row[i] = sim::bf16_value(bits[i]);
        const sim::quantized_row want = sim::reference_quantize_row(row, ue8m0);
        code_errors += std::memcmp(&codes[r * c.hidden], want.codes.data(), std::size_t(c.hidden)) != 0;
        scale_errors += ue8m0 ? std::memcmp(&scales[r * scale_row], want.ue8m0.data(), scale_row) != 0
                              : std::memcmp(&scales[r * scale_row], want.scales.data(), scale_row) != 0;
        for (std::size_t b = 0; b < extra_row; ++b)
          extra_errors += got_extra[r * extra_row + b] != sim::pattern_byte(100 * src + step, token, b);
        for (int j = 0; j < p.top_k; ++j)
          id_errors += got_ids[r * p.top_k + j] != routes.ids[src][std::size_t(token) * p.top_k + j];
        ++rows_checked;
      }
    EXPECT_EQ(code_errors, 0) << "rows with wrong codes, of " << rows_checked;
    EXPECT_EQ(scale_errors, 0) << "rows with wrong scales, of " << rows_checked;
    EXPECT_EQ(extra_errors, 0);
    EXPECT_EQ(id_errors, 0);
  }
  EXPECT_EQ(session.read_faults().input.code, comm::fault_code::none);
  session.barrier();
}

INSTANTIATE_TEST_SUITE_P(
    Routing, QuantizingDispatch,
    ::testing::Values(fp8_case{"uniform_k8_7168_fp32_scales", 96, 8, 32, 7168},
                      fp8_case{"uniform_k8_7168_ue8m0", 96, 8, 32, 7168, fp8::scale_format::ue8m0},
                      fp8_case{"partial_block_1000_ue8m0_skewed", 80, 8, 16, 1000, fp8::scale_format::ue8m0,
                               sim::routing::skewed},
                      fp8_case{"one_step_row_2880_all_to_one_rank", 64, 4, 8, 2880, fp8::scale_format::fp32,
                               sim::routing::one_rank},
                      fp8_case{"tiny_rows_8_k1", 128, 1, 4, 8},
                      fp8_case{"odd_ranks_empty_few_ctas", 77, 8, 32, 4096, fp8::scale_format::fp32,
                               sim::routing::uniform, 0xAAAAAAAAull, 3},
                      // Whole tokens (8 codes per lane on 2 ranks, 16 on more): 2 CTAs of 16 warps,
                      // at least 48 tokens.
                      fp8_case{"whole_tokens_7168_ue8m0", 64, 8, 32, 7168, fp8::scale_format::ue8m0,
                               sim::routing::uniform, 0, 2, 48},
                      // Claimed whole tokens: 2 CTAs of 16 warps, 150 tokens each (dispatch.cu, step 4).
                      fp8_case{"claimed_tokens_7168_fp32", 300, 8, 32, 7168, fp8::scale_format::fp32,
                               sim::routing::uniform, 0, 2, 300},
                      // Rows cut into slices, 16 codes per lane, one-round rows of 1024 elements.
                      fp8_case{"sliced_2048_ue8m0", 64, 8, 32, 2048, fp8::scale_format::ue8m0},
                      // Fewer tokens than CTAs (chunks of one token or none).
                      fp8_case{"fewer_tokens_than_ctas_7168", 24, 8, 32, 7168, fp8::scale_format::fp32,
                               sim::routing::uniform, 0, 64},
                      fp8_case{"fewer_tokens_than_ctas_1000_ue8m0_skewed", 40, 8, 16, 1000, fp8::scale_format::ue8m0,
                               sim::routing::skewed, 0, 48},
                      fp8_case{"placement_table_2880", 64, 8, 32, 2880, fp8::scale_format::fp32,
                               sim::routing::skewed, 0, 32, 0, true}),
    [](const auto& info) { return info.param.name; });

}  // namespace
