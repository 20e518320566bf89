#pragma once
// Shared by the single-GPU tests: EP size 1 on an NCCL communicator of one rank.
#include <gtest/gtest.h>

#include "epgraph/comm/device_buffer.hpp"
#include "epgraph/comm/error.hpp"
#include "epgraph/graph/step.hpp"
#include "epgraph/sim/device.hpp"
#include "epgraph/sim/reference.hpp"

namespace epgraph::gputest {

using namespace epgraph;

inline bool have_gpu() {
  int n = 0;
  return cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
}

inline comm::nccl_comm solo_comm() {
  ncclUniqueId id;
  EPG_CHECK_NCCL(ncclGetUniqueId(&id));
  return comm::nccl_comm::from_unique_id(id, 0, 1);
}

inline sim::problem small_problem() {
  sim::problem p;
  p.ep_size = 1;
  p.max_tokens = 64;
  p.top_k = 4;
  p.num_experts = 8;
  p.hidden = 1024;
  return p;
}

template <class F>
void expect_config_error(F&& f, const std::string& field, const std::string& fragment) {
  try {
    f();
    ADD_FAILURE() << "accepted; expected a rejection of " << field;
  } catch (const comm::error& e) {
    EXPECT_EQ(e.call(), field) << e.what();
    EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
  }
}

}  // namespace epgraph::gputest

class SingleRank : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!epgraph::gputest::have_gpu()) GTEST_SKIP() << "no CUDA GPU on this machine";
  }
};


