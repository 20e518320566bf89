#include <gtest/gtest.h>

#include "epgraph/comm/ep_session.hpp"
#include "epgraph/comm/error.hpp"

using namespace epgraph::comm;

TEST(Error, CarriesCallCodeMessageAndHint) {
  error e(error_domain::nccl, "ncclDevCommCreate", 5, "invalid usage", "check symmetric memory");
  EXPECT_EQ(e.call(), "ncclDevCommCreate");
  EXPECT_EQ(e.code(), 5);
  EXPECT_EQ(e.message(), "invalid usage");
  EXPECT_EQ(e.hint(), "check symmetric memory");
  const std::string text = e.what();
  EXPECT_EQ(text.rfind("epgraph: NCCL error in ncclDevCommCreate (code 5): invalid usage -- check symmetric memory", 0),
            0u)
      << text;
}

TEST(Error, CudaCheckMacroNamesTheFailingCall) {
  try {
    EPG_CHECK_CUDA(cudaErrorMemoryAllocation);
    FAIL();
  } catch (const error& e) {
    EXPECT_EQ(e.domain(), error_domain::cuda);
    EXPECT_EQ(e.call(), "cudaErrorMemoryAllocation");
    EXPECT_EQ(e.code(), static_cast<int>(cudaErrorMemoryAllocation));
    EXPECT_NE(e.hint().find("reduce max_tokens_per_rank"), std::string::npos);
  }
}

TEST(Error, NcclCheckMacroUsesNcclsMessage) {
  try {
    EPG_CHECK_NCCL(ncclInvalidUsage);
    FAIL();
  } catch (const error& e) {
    EXPECT_EQ(e.domain(), error_domain::nccl);
    EXPECT_EQ(e.message(), ncclGetErrorString(ncclInvalidUsage));
  }
}

TEST(Error, ConfigErrorsNameTheField) {
  try {
    throw_config_error("top_k", "is 40", "use at most 32");
    FAIL();
  } catch (const error& e) {
    EXPECT_EQ(e.domain(), error_domain::config);
    EXPECT_NE(std::string(e.what()).find("config error in top_k: is 40 -- use at most 32"), std::string::npos);
  }
}

TEST(Error, DeviceFaultsDescribeTokenEntryAndValue) {
  device_fault f{fault_code::expert_id_out_of_range, 3, 1, 300};
  EXPECT_EQ(f.describe(), "expert id out of range (entry skipped): token 3, top-k entry 1, value 300");
  device_fault g{fault_code::token_count_above_max, -1, -1, 5000};
  EXPECT_EQ(g.describe(), "token count above max_tokens_per_rank (clamped), value 5000");
}
