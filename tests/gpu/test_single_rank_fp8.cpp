// FP8 on one GPU (issue 15): quantize_rows_op and the quantizing dispatch (to itself) give the
// bytes of the independent host quantizer (sim::reference_quantize_row), specials included;
// planning rejects what it cannot quantize, naming the field.
#include <cstring>

#include "epgraph/sim/fp8_reference.hpp"
#include "single_rank.hpp"

using namespace epgraph;
using gputest::expect_config_error;

namespace {

constexpr std::uint64_t kSeed = 77;

std::vector<std::uint16_t> test_matrix(int rows, int hidden) {
  std::vector<std::uint16_t> m;
  for (int r = 0; r < rows; ++r) {
    const auto row = sim::bf16_test_row(hidden, kSeed, r);
    m.insert(m.end(), row.begin(), row.end());
  }
  return m;
}

// Compares quantized rows [rows][hidden] codes and [rows][blocks] scales with the reference of
// row `origin(r)` of the test matrix; returns the number of wrong bytes / scales.
long long count_mismatches(int rows, int hidden, bool ue8m0, const std::vector<std::uint8_t>& codes,
                           const std::vector<std::uint8_t>& scales, const std::function<int(int)>& origin) {
  const int blocks = kernels::fp8::blocks_of(hidden);
  long long wrong = 0;
  for (int r = 0; r < rows; ++r) {
    const auto bits = sim::bf16_test_row(hidden, kSeed, origin(r));
    std::vector<float> row(bits.size());
    for (std::size_t i = 0; i < bits.size(); ++i) row[i] = sim::bf16_value(bits[i]);
    const sim::quantized_row want = sim::reference_quantize_row(row, ue8m0);
    for (int i = 0; i < hidden; ++i)
      wrong += codes[std::size_t(r) * hidden + i] != want.codes[std::size_t(i)];
    for (int b = 0; b < blocks; ++b) {
      if (ue8m0) {
        wrong += scales[std::size_t(r) * blocks + b] != want.ue8m0[std::size_t(b)];
      } else {
        float got;
        std::memcpy(&got, &scales[(std::size_t(r) * blocks + b) * 4], 4);
        wrong += std::memcmp(&got, &want.scales[std::size_t(b)], 4) != 0;
      }
    }
  }
  return wrong;
}

}  // namespace

TEST_F(SingleRank, QuantizeRowsGivesTheHostQuantizersBytes) {
  auto nccl = gputest::solo_comm();
  const sim::problem p = gputest::small_problem();
  comm::ep_session session(nccl, sim::make_config(p, 8, 256));
  for (int hidden : {7168, 200, 8, 2880}) {
    for (bool ue8m0 : {false, true}) {
      SCOPED_TRACE("hidden " + std::to_string(hidden) + (ue8m0 ? ", ue8m0" : ", fp32 scales"));
      const int max_rows = 23, rows = 20;  // the last 3 rows must stay untouched
      const int blocks = kernels::fp8::blocks_of(hidden);
      const std::size_t scale_bytes = ue8m0 ? 1 : 4;
      const auto input = test_matrix(max_rows, hidden);
      comm::device_buffer in(input.size() * 2), codes(std::size_t(max_rows) * hidden),
          scales(std::size_t(max_rows) * blocks * scale_bytes), count(4);
      EPG_CHECK_CUDA(cudaMemcpy(in.get(), input.data(), input.size() * 2, cudaMemcpyHostToDevice));
      EPG_CHECK_CUDA(cudaMemcpy(count.get(), &rows, 4, cudaMemcpyHostToDevice));
      EPG_CHECK_CUDA(cudaMemset(codes.get(), 0xab, codes.bytes()));
      EPG_CHECK_CUDA(cudaMemset(scales.get(), 0xab, scales.bytes()));
      kernels::quantize_rows_op quantize(
          session, {count.as<std::int32_t>(), max_rows, hidden, in.get(), codes.get(), scales.get(),
                    ue8m0 ? kernels::fp8::scale_format::ue8m0 : kernels::fp8::scale_format::fp32});
      ASSERT_EQ(quantize.run(nullptr), cudaSuccess);
      std::vector<std::uint8_t> got_codes(codes.bytes()), got_scales(scales.bytes());
      EPG_CHECK_CUDA(cudaMemcpy(got_codes.data(), codes.get(), got_codes.size(), cudaMemcpyDeviceToHost));
      EPG_CHECK_CUDA(cudaMemcpy(got_scales.data(), scales.get(), got_scales.size(), cudaMemcpyDeviceToHost));
      EXPECT_EQ(count_mismatches(rows, hidden, ue8m0, got_codes, got_scales, [](int r) { return r; }), 0);
      long long touched = 0;
      for (std::size_t i = std::size_t(rows) * hidden; i < got_codes.size(); ++i) touched += got_codes[i] != 0xab;
      for (std::size_t i = std::size_t(rows) * blocks * scale_bytes; i < got_scales.size(); ++i)
        touched += got_scales[i] != 0xab;
      EXPECT_EQ(touched, 0) << "rows past the count were written";
    }
  }
  EXPECT_EQ(session.read_faults().input.code, comm::fault_code::none);
}

// EP size 1: every token goes to this rank itself, through the same push as to a peer.
TEST_F(SingleRank, AQuantizingDispatchDeliversTheHostQuantizersBytes) {
  auto nccl = gputest::solo_comm();
  for (bool ue8m0 : {false, true}) {
    SCOPED_TRACE(ue8m0 ? "ue8m0" : "fp32 scales");
    sim::problem p = gputest::small_problem();
    p.hidden = 1000;  // a partial last block (1000 = 7 x 128 + 104)
    const int blocks = kernels::fp8::blocks_of(p.hidden);
    const std::size_t scale_bytes = ue8m0 ? 1 : 4;
    comm::ep_config cfg = sim::make_config(p, 8, 256);
    cfg.payloads = {{"scales", blocks * scale_bytes}, {"codes", std::size_t(p.hidden)}, {"extra", 12}};
    comm::ep_session session(nccl, cfg);
    const int T = 57;
    std::vector<std::int32_t> ids(std::size_t(p.max_tokens) * p.top_k);
    for (std::size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<std::int32_t>((i * 5) % p.num_experts);
    const auto input = test_matrix(p.max_tokens, p.hidden);
    comm::device_buffer count(4), d_ids(ids.size() * 4), rows(input.size() * 2), extra(std::size_t(p.max_tokens) * 12);
    EPG_CHECK_CUDA(cudaMemcpy(count.get(), &T, 4, cudaMemcpyHostToDevice));
    EPG_CHECK_CUDA(cudaMemcpy(d_ids.get(), ids.data(), ids.size() * 4, cudaMemcpyHostToDevice));
    EPG_CHECK_CUDA(cudaMemcpy(rows.get(), input.data(), input.size() * 2, cudaMemcpyHostToDevice));
    EPG_CHECK_CUDA(sim::fill_pattern(extra.get(), p.max_tokens, 12, 5, nullptr));
    kernels::dispatch_args args{count.as<std::int32_t>(), d_ids.as<std::int32_t>(),
                                {{nullptr, 0}, {nullptr, 0}, {extra.get(), 12}},
                                kernels::fp8_dispatch{rows.get(), 1, 0,
                                                      ue8m0 ? kernels::fp8::scale_format::ue8m0
                                                            : kernels::fp8::scale_format::fp32}};
    kernels::dispatch_op dispatch(session, args);
    ASSERT_EQ(dispatch.run(nullptr), cudaSuccess);
    EPG_CHECK_CUDA(cudaDeviceSynchronize());
    std::vector<std::uint8_t> codes(std::size_t(T) * p.hidden), scales(std::size_t(T) * blocks * scale_bytes),
        got_extra(std::size_t(T) * 12);
    EPG_CHECK_CUDA(cudaMemcpy(codes.data(), session.recv_payload(1), codes.size(), cudaMemcpyDeviceToHost));
    EPG_CHECK_CUDA(cudaMemcpy(scales.data(), session.recv_payload(0), scales.size(), cudaMemcpyDeviceToHost));
    EPG_CHECK_CUDA(cudaMemcpy(got_extra.data(), session.recv_payload(2), got_extra.size(), cudaMemcpyDeviceToHost));
    // One rank: slot i holds token i.
    EXPECT_EQ(count_mismatches(T, p.hidden, ue8m0, codes, scales, [](int r) { return r; }), 0);
    long long extra_wrong = 0;
    for (int t = 0; t < T; ++t)
      for (int b = 0; b < 12; ++b) extra_wrong += got_extra[std::size_t(t) * 12 + b] != sim::pattern_byte(5, t, b);
    EXPECT_EQ(extra_wrong, 0);
    EXPECT_EQ(session.read_faults().input.code, comm::fault_code::none);
  }
}

TEST_F(SingleRank, AQuantizingDispatchItCannotPlanIsRejectedNamingTheField) {
  auto nccl = gputest::solo_comm();
  sim::problem p = gputest::small_problem();
  comm::ep_config cfg = sim::make_config(p, 8, 256);
  cfg.payloads = {{"codes", 1000}, {"scales", 8 * 4}, {"odd_codes", 1004}, {"ue8m0", 8}};
  comm::ep_session session(nccl, cfg);
  comm::device_buffer count(4), ids(std::size_t(p.max_tokens) * p.top_k * 4), rows(std::size_t(p.max_tokens) * 1004 * 2 + 16),
      other(std::size_t(p.max_tokens) * 1004);
  EPG_CHECK_CUDA(cudaMemset(count.get(), 0, 4));
  // The payloads the quantizer does not write get a buffer; its two stay empty.
  const auto args = [&](kernels::fp8_dispatch q) {
    kernels::dispatch_args a{count.as<std::int32_t>(), ids.as<std::int32_t>(), {}, q};
    for (int i = 0; i < 4; ++i)
      a.payloads.push_back(i == q.codes_payload || i == q.scales_payload
                               ? kernels::payload_input{}
                               : kernels::payload_input{other.get(), cfg.payloads[std::size_t(i)].row_bytes});
    return a;
  };
  using kernels::fp8::scale_format;
  expect_config_error([&] { (void)kernels::dispatch_op(session, args({rows.get(), 4, 1, scale_format::fp32})); },
                      "dispatch_args.quantize.codes_payload", "has 4 payloads");
  expect_config_error([&] { (void)kernels::dispatch_op(session, args({rows.get(), 0, 0, scale_format::fp32})); },
                      "dispatch_args.quantize.scales_payload", "codes payload too");
  expect_config_error([&] { (void)kernels::dispatch_op(session, args({rows.get(), 0, 3, scale_format::fp32})); },
                      "payloads[3].row_bytes", "need 32 bytes of fp32 scales");
  expect_config_error([&] { (void)kernels::dispatch_op(session, args({rows.get(), 0, 1, scale_format::ue8m0})); },
                      "payloads[1].row_bytes", "need 8 bytes of UE8M0 scales");
  expect_config_error([&] { (void)kernels::dispatch_op(session, args({rows.get(), 2, 1, scale_format::fp32})); },
                      "payloads[2].row_bytes", "multiple of 8 elements");
  expect_config_error([&] { (void)kernels::dispatch_op(session, args({rows.as<char>() + 8, 0, 1, scale_format::fp32})); },
                      "dispatch_args.quantize.rows", "aligned to 16 bytes");
  expect_config_error([&] { (void)kernels::dispatch_op(session, args({session.combine_region(), 0, 1, scale_format::fp32})); },
                      "dispatch_args.quantize.rows", "overlaps the session's workspace");
  auto given = args({rows.get(), 0, 1, scale_format::fp32});
  given.payloads[0] = {rows.get(), 1000};
  expect_config_error([&] { (void)kernels::dispatch_op(session, given); }, "dispatch_args.payloads[0].data",
                      "the quantizing dispatch writes that payload");
  expect_config_error(
      [&] {
        (void)kernels::quantize_rows_op(session, {count.as<std::int32_t>(), 4, 1004 - 2, rows.get(), rows.get(), rows.get(),
                                            scale_format::fp32});
      },
      "quantize_rows_args.hidden", "multiple of 8");
  expect_config_error(
      [&] {
        (void)kernels::quantize_rows_op(session, {count.as<std::int32_t>(), 4, 1000, rows.get(), rows.as<char>() + 4000,
                                                  other.get(), scale_format::fp32});
      },
      "quantize_rows_args.codes", "overlaps the rows");
  // Accepted: both scale formats (the dispatch test above has the scales before the codes).
  EXPECT_NO_THROW((void)kernels::dispatch_op(session, args({rows.get(), 0, 1, scale_format::fp32})));
  EXPECT_NO_THROW((void)kernels::dispatch_op(session, args({rows.get(), 0, 3, scale_format::ue8m0})));
}

// Reduced precision at EP size 1, in a step graph over three batches of one captured graph:
// the output equals the host reference (sim::expect_output of the problem, whose quantizer is
// the independent one) bit for bit, and the device check (sim::check_output) agrees; it
// differs from the exact step's reference, so the reduced path really ran (but where UE8M0
// scales are exact on the problem's values: multiples of 1/8 in [-1, 1] become multiples of
// 32 up to 256, all e4m3 values).
// - FP8 combine of bf16 rows: prepare-combine quantizes.
// - bf16 combine of fp32 rows: prepare-combine rounds.
// - the quantizing dispatch (both scale formats) into the reference experts, which read code x
//   scale; alone and with the FP8 combine.
void expect_reduced_step(sim::problem p, bool differs = true) {
  auto nccl = gputest::solo_comm();
  comm::ep_session session(nccl, sim::make_config(p, 8, 256));
  sim::batch_storage batch(p);
  comm::device_buffer expert_output(session.layout().combine.bytes), wrong(sizeof(unsigned long long));
  EPG_CHECK_CUDA(cudaMemset(wrong.get(), 0, sizeof(unsigned long long)));
  graph::step_spec spec;
  spec.dispatch = batch.dispatch_args();
  spec.combine = batch.combine_args();  // carries p.combine
  spec.experts = sim::reference_expert_stage(p);
  spec.expert_output = expert_output.get();
  graph::stream s;
  graph::step_graph step(graph::plan_step(session, spec), s);
  sim::problem exact_problem = p;
  exact_problem.quantize = false;
  exact_problem.combine = kernels::combine_precision::exact;
  const std::size_t elem = comm::element_size(p.dtype);
  for (std::uint64_t n : {1u, 2u, 3u}) {
    ASSERT_EQ(sim::generate_batch(p, 0, n, batch.inputs(), s.get()), cudaSuccess);
    ASSERT_EQ(step.replay(s), cudaSuccess);
    ASSERT_EQ(sim::check_output(p, 0, n, batch.output(), wrong.as<unsigned long long>(), s.get()), cudaSuccess);
    s.sync();
    const int T = sim::token_count(p, 0, n);
    std::vector<unsigned char> got(std::size_t(T) * p.hidden * elem);
    EPG_CHECK_CUDA(cudaMemcpy(got.data(), batch.output(), got.size(), cudaMemcpyDeviceToHost));
    const auto want = sim::expect_output(p, n, 0), exact = sim::expect_output(exact_problem, n, 0);
    long long wrong_elements = 0, differs_from_exact = 0;
    for (std::size_t i = 0; i < want.size(); ++i) {
      const float v = sim::load_element(p.dtype, &got[i * elem]);
      wrong_elements += v != want[i];
      differs_from_exact += v != exact[i];
    }
    EXPECT_EQ(wrong_elements, 0) << "step " << n << ", of " << want.size();
    if (differs) {
      EXPECT_GT(differs_from_exact, 0) << "the reduced path must not be the exact one";
    } else {
      EXPECT_EQ(differs_from_exact, 0) << "UE8M0 is exact on these values";
    }
    EXPECT_EQ(sim::count_wrong(p, n, 0, got.data()), wrong_elements);
  }
  unsigned long long device_wrong = 1;
  EPG_CHECK_CUDA(cudaMemcpy(&device_wrong, wrong.get(), sizeof device_wrong, cudaMemcpyDeviceToHost));
  EXPECT_EQ(device_wrong, 0u) << "the device check disagrees with the host reference";
  EXPECT_EQ(session.read_faults().input.code, comm::fault_code::none);
}

TEST_F(SingleRank, AnFp8CombineStepEqualsTheFp8Reference) {
  sim::problem p = gputest::small_problem();
  p.hidden = 1040;  // 8 blocks of 128 and one of 16
  p.combine = kernels::combine_precision::fp8;
  expect_reduced_step(p);
}

TEST_F(SingleRank, ABf16CombineOfFp32RowsEqualsItsReference) {
  sim::problem p = gputest::small_problem();
  p.dtype = comm::element_type::fp32;
  p.hidden = 1048;  // a multiple of 8, not of 16
  p.combine = kernels::combine_precision::bf16;
  expect_reduced_step(p);
}

TEST_F(SingleRank, AQuantizingDispatchStepEqualsItsReference) {
  for (auto scales : {kernels::fp8::scale_format::fp32, kernels::fp8::scale_format::ue8m0}) {
    SCOPED_TRACE(scales == kernels::fp8::scale_format::ue8m0 ? "ue8m0" : "fp32 scales");
    sim::problem p = gputest::small_problem();
    p.hidden = 1000;  // 7 blocks of 128 and one of 104
    p.quantize = true;
    p.scales = scales;
    expect_reduced_step(p, scales == kernels::fp8::scale_format::fp32);
  }
  sim::problem both = gputest::small_problem();
  both.hidden = 2064;
  both.quantize = true;
  both.combine = kernels::combine_precision::fp8;
  expect_reduced_step(both);
}

TEST_F(SingleRank, AnFp8CombineItCannotServeIsRejectedNamingTheField) {
  auto nccl = gputest::solo_comm();
  sim::problem p = gputest::small_problem();
  comm::device_buffer out(std::size_t(p.max_tokens) * 1032 * 4 + 16), count(4);
  {
    sim::problem odd = p;
    odd.hidden = 1032;  // a multiple of 8, not of 16
    comm::ep_session session(nccl, sim::make_config(odd, 8, 256));
    expect_config_error(
        [&] {
          (void)kernels::combine_op(session, {nullptr, out.get(), comm::element_type::bf16,
                                              kernels::combine_precision::fp8});
        },
        "combine_args.precision", "hidden % 16 == 0");
  }
  {
    sim::problem wide = p;
    wide.dtype = comm::element_type::fp32;
    comm::ep_session session(nccl, sim::make_config(wide, 8, 256));
    expect_config_error(
        [&] { (void)kernels::prepare_combine_op(session, out.get(), kernels::combine_precision::fp8); },
        "prepare_combine.precision", "combine_type is fp32");
  }
  comm::ep_session session(nccl, sim::make_config(p, 8, 256));
  expect_config_error(
      [&] {
        (void)kernels::combine_op(session, {nullptr, out.as<char>() + 8, comm::element_type::bf16,
                                            kernels::combine_precision::fp8});
      },
      "combine_args.output", "16-byte aligned");
  sim::batch_storage batch(p);
  graph::step_spec spec = sim::zero_copy_step(session, batch, p);
  spec.combine.precision = kernels::combine_precision::fp8;
  expect_config_error([&] { (void)graph::plan_step(session, spec); }, "step_spec.combine.precision",
                      "the expert output is the combine region");
  // bf16 rounds fp32 rows: a bf16 session has nothing to round.
  expect_config_error(
      [&] {
        (void)kernels::combine_op(session, {nullptr, out.get(), comm::element_type::bf16,
                                            kernels::combine_precision::bf16});
      },
      "combine_args.precision", "is bf16 but the session's combine_type is bf16");
  expect_config_error(
      [&] {
        (void)kernels::combine_op(session, {nullptr, out.get(), comm::element_type::bf16,
                                            static_cast<kernels::combine_precision>(7)});
      },
      "combine_args.precision", "use exact, fp8 or bf16");
}
