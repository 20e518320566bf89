// One GPU, EP size 1 (an NCCL communicator of one rank): the whole pipeline, host-side
// input validation and device fault reporting, without MPI.
#include "single_rank.hpp"

using namespace epgraph;
using namespace epgraph::gputest;

TEST_F(SingleRank, StepGraphMatchesReferenceInBothVariants) {
  auto nccl = solo_comm();
  for (bool zero_copy : {true, false}) {
    auto p = small_problem();
    comm::ep_session session(nccl, sim::make_config(p, 8, 256));
    sim::batch_storage b(p);
    comm::device_buffer staged(zero_copy ? 0 : std::size_t(p.max_tokens) * p.hidden * 2);
    graph::step_spec spec = sim::zero_copy_step(session, b, p);
    if (!zero_copy) spec.expert_output = staged.get();
    graph::stream s;
    graph::step_graph step(graph::plan_step(session, spec), s);
    EXPECT_EQ(step.plan().prepare_combine, !zero_copy);
    std::vector<std::uint16_t> host(std::size_t(p.max_tokens) * p.hidden);
    for (std::uint64_t k = 0; k < 20; ++k) {
      ASSERT_EQ(sim::generate_batch(p, 0, k, b.inputs(), s.get()), cudaSuccess);
      ASSERT_EQ(step.replay(s), cudaSuccess);
      s.sync();
      const int T = sim::token_count(p, 0, k);
      EPG_CHECK_CUDA(cudaMemcpy(host.data(), b.output(), std::size_t(T) * p.hidden * 2, cudaMemcpyDeviceToHost));
      ASSERT_EQ(sim::count_wrong(p, k, 0, host.data()), 0) << "step " << k << " T=" << T << (zero_copy ? " zero-copy" : " staged");
    }
    EXPECT_EQ(session.read_faults().first().code, comm::fault_code::none);
    // Every step was one dispatch and one combine: the progress record counts them.
    const auto seen = session.peer_progress();
    ASSERT_EQ(seen.size(), 1u);
    EXPECT_EQ(seen[0].seq, 40u);
    EXPECT_EQ(seen[0].kind, comm::collective_kind::combine);
  }
}

TEST_F(SingleRank, BadHostInputIsRejectedBeforeLaunch) {
  auto nccl = solo_comm();
  auto p = small_problem();
  comm::ep_session session(nccl, sim::make_config(p, 8, 256));
  sim::batch_storage b(p);
  // Each case breaks one field of otherwise valid arguments.
  auto dispatch_with = [&](auto&& change) {
    return [&, change] {
      kernels::dispatch_args a = b.dispatch_args();
      change(a);
      kernels::dispatch_op op(session, a);
    };
  };
  expect_config_error(dispatch_with([](kernels::dispatch_args& a) { a.num_tokens = nullptr; }),
                      "dispatch_args.num_tokens", "is null");
  expect_config_error(dispatch_with([](kernels::dispatch_args& a) { a.payloads.pop_back(); }),
                      "dispatch_args.payloads", "has 1 entries but the session was configured with 2");
  expect_config_error(dispatch_with([](kernels::dispatch_args& a) { a.payloads[0].row_bytes -= 2; }),
                      "dispatch_args.payloads[0].row_bytes", "the session's payload 'hidden' has 2048");
  expect_config_error(dispatch_with([](kernels::dispatch_args& a) {
                        a.payloads[0].data = static_cast<const char*>(a.payloads[0].data) + 4;
                      }),
                      "dispatch_args.payloads[0].data", "not aligned to 16 bytes");
  expect_config_error(
      [&] {
        kernels::combine_args a = b.combine_args();
        a.output = nullptr;
        kernels::combine_op op(session, a);
      },
      "combine_args.output", "is null");
  expect_config_error([&] { kernels::prepare_combine_op op(session, session.combine_region()); },
                      "prepare_combine.expert_output", "it is the combine region");
  expect_config_error([&] { kernels::prepare_combine_op op(session, session.recv_payload(0)); },
                      "prepare_combine.expert_output", "overlaps the session's workspace");
  // An output type outside the enum used to divide by its zero element size.
  expect_config_error(
      [&] {
        kernels::combine_args a = b.combine_args();
        a.output_type = static_cast<comm::element_type>(7);
        kernels::combine_op op(session, a);
      },
      "combine_args.output_type", "is 7, not bf16, fp16 or fp32");
  expect_config_error(
      [&] {
        kernels::combine_args a = b.combine_args();
        a.output = session.combine_region();
        kernels::combine_op op(session, a);
      },
      "combine_args.output", "overlaps the session's workspace");
  // Combine sums what dispatch handled: a spec whose two token scalars differ is rejected.
  comm::device_buffer other_count(sizeof(std::int32_t));
  expect_config_error(
      [&] {
        graph::step_spec spec = sim::zero_copy_step(session, b, p);
        spec.combine.num_tokens = other_count.as<std::int32_t>();
        (void)graph::plan_step(session, spec);
      },
      "step_spec.combine.num_tokens", "is not dispatch.num_tokens");
}

TEST_F(SingleRank, DeviceFaultsAreRecordedAndNothingIsWrittenOutOfBounds) {
  auto nccl = solo_comm();
  auto p = small_problem();
  comm::ep_session session(nccl, sim::make_config(p, 8, 256));
  sim::batch_storage b(p);
  kernels::dispatch_op dispatch(session, b.dispatch_args());
  graph::stream s;
  ASSERT_EQ(sim::generate_batch(p, 0, 0, b.inputs(), s.get()), cudaSuccess);
  s.sync();  // the planted id below goes through the legacy stream
  // Token 3, entry 1 gets an expert id past the end.
  const std::int32_t bad = p.num_experts + 5;
  EPG_CHECK_CUDA(cudaMemcpy(b.inputs().topk_ids + 3 * p.top_k + 1, &bad, 4, cudaMemcpyHostToDevice));
  ASSERT_EQ(sim::set_token_count(b.inputs().num_tokens, 10, s.get()), cudaSuccess);
  ASSERT_EQ(dispatch.run(s.get()), cudaSuccess);
  s.sync();
  auto f = session.read_faults().input;
  EXPECT_EQ(f.code, comm::fault_code::expert_id_out_of_range);
  EXPECT_EQ(f.token, 3);
  EXPECT_EQ(f.entry, 1);
  EXPECT_EQ(f.value, bad);
  try {
    session.check_faults();
    ADD_FAILURE() << "no error";
  } catch (const comm::error& e) {
    EXPECT_NE(std::string(e.what()).find("token 3, top-k entry 1, value 13"), std::string::npos) << e.what();
  }
  EXPECT_EQ(session.read_faults().input.code, comm::fault_code::none);  // check_faults cleared it
  EXPECT_FALSE(session.failed());  // an input fault does not stop the session

  // A token count above the maximum is clamped: exactly max_tokens rows arrive.
  ASSERT_EQ(sim::set_token_count(b.inputs().num_tokens, p.max_tokens + 100, s.get()), cudaSuccess);
  ASSERT_EQ(dispatch.run(s.get()), cudaSuccess);
  s.sync();
  f = session.read_faults().input;
  EXPECT_EQ(f.code, comm::fault_code::token_count_above_max);
  EXPECT_EQ(f.value, p.max_tokens + 100);
  std::int32_t received = 0;
  EPG_CHECK_CUDA(cudaMemcpy(&received, session.recv_counts(), 4, cudaMemcpyDeviceToHost));
  EXPECT_EQ(received, p.max_tokens);
}

TEST_F(SingleRank, WorkspaceThatCannotFitNamesBytesAndKnobs) {
  auto nccl = solo_comm();
  auto p = small_problem();
  p.max_tokens = 1 << 20;
  p.hidden = 1 << 17;  // 256 GiB of hidden rows alone
  try {
    comm::ep_session session(nccl, sim::make_config(p, 8, 256));
    ADD_FAILURE() << "a workspace larger than the GPU was accepted";
  } catch (const comm::error& e) {
    const std::string text = e.what();
    EXPECT_NE(text.find("the workspace needs"), std::string::npos) << text;
    EXPECT_NE(text.find("reduce max_tokens_per_rank"), std::string::npos) << text;
  }
}
