// One GPU, EP size 1: the expert-major step (permute, expert stage on grouped rows, weighted
// un-permute) against the reference in both forms, rows copied or indexed, and at every combine
// type, its load statistics, and the planning rejections of the permute and un-permute.
#include "single_rank.hpp"

#include "epgraph/kernels/expert_major.hpp"

using namespace epgraph;
using namespace epgraph::gputest;

TEST_F(SingleRank, AnExpertMajorStepMatchesTheReferenceInBothFormsAndEveryType) {
  SCOPED_TRACE("expert-major step");
  auto nccl = solo_comm();
  for (comm::element_type type : {comm::element_type::bf16, comm::element_type::fp16, comm::element_type::fp32}) {
    for (comm::expert_major_form form : {comm::expert_major_form::packed, comm::expert_major_form::masked}) {
      for (bool copy_rows : {true, false}) {
        SCOPED_TRACE(copy_rows ? "rows copied" : "rows indexed (the expert stage gathers through receive_rows)");
        auto p = small_problem();
        p.dtype = type;
        // fp32 rows of 4000 bytes, bf16 and fp16 of 2000: 16-byte vectors, not a power of two;
        // the masked runs take 1001 elements, whose 16-bit rows are copied and summed by element.
        p.hidden = form == comm::expert_major_form::masked && type != comm::element_type::fp32 ? 1001 : 1000;
        comm::ep_session session(nccl, sim::make_config(p, 8, 256));
        sim::batch_storage b(p);
        graph::step_spec spec;
        spec.dispatch = b.dispatch_args();
        spec.combine = b.combine_args();
        bool indexed_view = false;  // what the expert stage was given (at capture)
        spec.experts = [&indexed_view, inner = sim::reference_expert_stage(p)](const graph::expert_stage_io& io,
                                                                               cudaStream_t st) {
          indexed_view = io.expert_major && io.expert_major->receive_rows && io.expert_major->payloads.empty();
          return inner(io, st);
        };
        spec.expert_major = kernels::permute_args{{form, 0, 0, true, copy_rows}, 1};
        graph::stream s;
        graph::step_graph step(graph::plan_step(session, spec), s);
        EXPECT_NE(step.plan().explain().find("un-permute (weighted)"), std::string::npos) << step.plan().explain();
        EXPECT_EQ(indexed_view, !copy_rows);
        std::vector<unsigned char> host(std::size_t(p.max_tokens) * p.hidden * comm::element_size(type));
        std::vector<std::uint64_t> want(static_cast<std::size_t>(p.num_experts), 0);
        std::uint64_t received = 0;
        for (std::uint64_t k = 0; k < 20; ++k) {
          ASSERT_EQ(sim::generate_batch(p, 0, k, b.inputs(), s.get()), cudaSuccess);
          ASSERT_EQ(step.replay(s), cudaSuccess);
          s.sync();
          const int T = sim::token_count(p, 0, k);
          EPG_CHECK_CUDA(cudaMemcpy(host.data(), b.output(), std::size_t(T) * p.hidden * comm::element_size(type),
                                    cudaMemcpyDeviceToHost));
          ASSERT_EQ(sim::count_wrong(p, k, 0, host.data()), 0)
              << "step " << k << " T=" << T << " hidden " << p.hidden << " " << comm::to_string(type);
          received += static_cast<std::uint64_t>(T);
          for (int t = 0; t < T; ++t)
            for (int j = 0; j < p.top_k; ++j) ++want[static_cast<std::size_t>(sim::expert_id(p, 0, k, t, j))];
        }
        const comm::ep_session::expert_load load = session.read_expert_load();
        EXPECT_EQ(load.tokens, want);
        EXPECT_EQ(load.received, received);
        EXPECT_EQ(session.read_faults().first().code, comm::fault_code::none);
      }
    }
  }
}

TEST_F(SingleRank, ExpertMajorPlanningRejectsWhatItCannotServe) {
  auto nccl = solo_comm();
  auto p = small_problem();
  comm::ep_session session(nccl, sim::make_config(p, 8, 256));  // payloads: hidden (2048 B), weights (16 B)
  auto permute_with = [&](kernels::permute_args args) {
    return [&session, args] { kernels::permute_op op(session, args); };
  };
  kernels::permute_args a;
  a.weights_payload = 2;
  expect_config_error(permute_with(a), "permute_args.weights_payload", "is 2 but the session has 2 payloads");
  a.weights_payload = 0;
  expect_config_error(permute_with(a), "permute_args.weights_payload",
                      "names payload 'hidden' of 2048 bytes per token, not top_k fp32 weights (16)");
  a = {};
  a.spec.weights = true;
  expect_config_error(permute_with(a), "expert_major_spec.weights", "is set without permute_args.weights_payload");
  a = {};
  a.spec.local_slots = 3;
  expect_config_error(permute_with(a), "expert_major_spec.local_slots", "is 3, not 0 or the session's 8 expert slots per rank");
  a = {};
  a.spec.capacity = -2;
  expect_config_error(permute_with(a), "expert_major_spec.capacity", "is -2");
  const kernels::permute_op unweighted(session, kernels::permute_args{});
  expect_config_error([&] { kernels::unpermute_op op(session, unweighted, true); }, "unpermute_op weighted",
                      "the permute names no weights payload");
  sim::batch_storage b(p);
  expect_config_error(
      [&] {
        graph::step_spec spec = sim::zero_copy_step(session, b, p);
        spec.expert_major = kernels::permute_args{};
        (void)graph::plan_step(session, spec);
      },
      "step_spec.expert_output", "is set beside expert_major");
  // A planned permute has the sizes of plan_expert_major, and its view points into one buffer.
  const comm::expert_major_layout l = unweighted.layout();
  EXPECT_EQ(unweighted.view().rows, l.rows);
  EXPECT_EQ(unweighted.view().weights, nullptr);
  EXPECT_EQ(static_cast<const char*>(unweighted.view().output) - static_cast<const char*>(unweighted.view().payloads[0]),
            static_cast<std::ptrdiff_t>(l.output.offset - l.payloads[0].offset));
}

// The count and place kernels take exactly the dynamic shared memory the planner allows (48 KB
// at top_k 6 and 960 slots: 4 warps x (32 x 6 + 3 x 960) ints) and still launch, so neither may
// hold static shared memory; one slot more is refused when planned.
TEST_F(SingleRank, APermuteAtThePlannersSharedMemoryLimitLaunches) {
  auto nccl = solo_comm();
  auto p = small_problem();
  p.top_k = 6;
  p.num_experts = 960;
  {
    comm::ep_session session(nccl, sim::make_config(p, 8, 256));
    const kernels::permute_op permute(session, kernels::permute_args{});
    graph::stream s;
    ASSERT_EQ(permute.run(s.get()), cudaSuccess);
    s.sync();
    EXPECT_EQ(cudaGetLastError(), cudaSuccess);
  }
  p.num_experts = 961;
  comm::ep_session wider(nccl, sim::make_config(p, 8, 256));
  expect_config_error([&] { kernels::permute_op op(wider, kernels::permute_args{}); }, "ep_config.local_slots()",
                      "is 961: the permute's counters need 49200 bytes of shared memory, over 49152");
}
