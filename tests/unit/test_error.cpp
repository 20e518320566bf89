#include <gtest/gtest.h>

#include <string>

#include "epgraph/comm/ep_config.hpp"
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

// A non-blocking communicator answers ncclInProgress where setup expects ncclSuccess: the
// error says what to pass instead.
TEST(Error, InProgressPointsAtANonBlockingCommunicator) {
  try {
    EPG_CHECK_NCCL(ncclInProgress);
    FAIL();
  } catch (const error& e) {
    EXPECT_EQ(e.code(), static_cast<int>(ncclInProgress));
    EXPECT_NE(e.hint().find("non-blocking"), std::string::npos) << e.what();
    EXPECT_NE(e.hint().find("pass a blocking one"), std::string::npos) << e.what();
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

TEST(Error, PeerDomainIsNamed) {
  error e(error_domain::peer, "check_faults (rank 0)", 0, "rank 2 did not reach 'check_faults' within 3 s", "destroy it");
  EXPECT_NE(std::string(e.what()).find("epgraph: peer error in check_faults (rank 0) (code 0): rank 2 did not reach"),
            std::string::npos)
      << e.what();
}

// Errors end with [file:line] of the check that failed: the caller's file, as a path from the
// source tree's root, never the throw helper's (error.cpp) and never an absolute build path.
TEST(Error, ConfigErrorNamesTheCallersFileRelativeToTheTree) {
  int line = 0;
  try {
    line = __LINE__ + 1;
    throw_config_error("top_k", "is 40", "use at most 32");
  } catch (const error& e) {
    const std::string text = e.what();
    EXPECT_NE(text.find("[tests/unit/test_error.cpp:" + std::to_string(line) + "]"), std::string::npos) << text;
    EXPECT_EQ(text.find("src/error.cpp"), std::string::npos) << text;
    EXPECT_EQ(text.find(" [/"), std::string::npos) << "absolute path in: " << text;
  }
  EXPECT_NE(line, 0);
}

TEST(Error, LibraryConfigErrorsPointIntoTheLibraryNotAtTheHelper) {
  ep_config c;
  c.ep_size = 2;
  c.max_tokens_per_rank = 128;
  c.top_k = 8;
  c.num_experts = 255;  // not divisible by ep_size
  c.hidden = 1024;
  try {
    validate(c);
    FAIL() << "num_experts 255 with ep_size 2 was accepted";
  } catch (const error& e) {
    const std::string text = e.what();
    EXPECT_NE(text.find("[modules/comm/src/ep_config.cpp:"), std::string::npos) << text;
    EXPECT_EQ(text.find(" [/"), std::string::npos) << "absolute path in: " << text;
  }
}

TEST(Error, CheckMacrosNameTheCallersFile) {
  try {
    EPG_CHECK_CUDA(cudaErrorInvalidValue);
    FAIL();
  } catch (const error& e) {
    EXPECT_NE(std::string(e.what()).find("[tests/unit/test_error.cpp:"), std::string::npos) << e.what();
  }
}
