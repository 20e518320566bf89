// Shared main of the MPI tests. All ranks agree to skip (exit 77, ctest's skip code) when
// this node has fewer GPUs than ranks, so a machine without GPUs reports "skipped".
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <stdexcept>
#include <string>

#include "epgraph/comm/ep_session.hpp"
#include "epgraph/comm/select_device.hpp"
#include "epgraph/comm/error.hpp"
#include "world.hpp"

namespace epgraph::mpitest {
namespace {
comm::mpi_context* g_mpi = nullptr;
comm::nccl_comm* g_nccl = nullptr;
int g_domain_size = 0;

// Ranks other than 0 print only their failures, prefixed with the rank.
class failure_printer : public ::testing::EmptyTestEventListener {
 public:
  explicit failure_printer(int rank) : rank_(rank) {}
  void OnTestPartResult(const ::testing::TestPartResult& r) override {
    if (r.failed())
      std::fprintf(stderr, "[rank %d] %s:%d: %s\n", rank_, r.file_name() ? r.file_name() : "?", r.line_number(),
                   r.summary());
  }

 private:
  int rank_;
};
}  // namespace

comm::mpi_context& mpi() { return *g_mpi; }
comm::nccl_comm& world_comm() { return *g_nccl; }
bool all_ok(bool ok) { return g_mpi->all_agree(ok); }
int domain_size() { return g_domain_size; }

std::uint64_t env_or(const char* name, std::uint64_t fallback, std::uint64_t least, std::uint64_t most) {
  const char* v = std::getenv(name);
  if (!v || !*v) return fallback;
  char* end = nullptr;
  errno = 0;
  const unsigned long long x = std::strtoull(v, &end, 10);
  if (*v == '-' || *end != '\0' || errno != 0 || x < least || x > most)
    throw std::invalid_argument(std::string(name) + " is '" + v + "': use a whole number from " +
                                std::to_string(least) + " to " + std::to_string(most));
  return x;
}

sim::problem problem_on_this_world(int max_tokens, int top_k, int experts_per_rank, sim::routing dist,
                                   std::uint64_t empty_ranks) {
  sim::problem p;
  p.ep_size = mpi().size();
  p.max_tokens = max_tokens;
  p.top_k = top_k;
  p.num_experts = experts_per_rank * p.ep_size;
  p.dist = dist;
  p.empty_ranks = empty_ranks;
  p.domain_size = domain_size();
  return p;
}
}  // namespace epgraph::mpitest

int main(int argc, char** argv) {
  using namespace epgraph;
  int rc = 1;
  try {
    comm::mpi_context mpi(&argc, &argv);
    int gpus = 0;
    if (cudaGetDeviceCount(&gpus) != cudaSuccess) gpus = 0;
    // EPGRAPH_TEST_MIN_RANKS=1 lets a machine with one GPU run the suites that mean something
    // for one rank (Dispatch, Combine, Step: every row to itself) under a filter.
    const auto min_ranks = static_cast<int>(mpitest::env_or("EPGRAPH_TEST_MIN_RANKS", 2, 1, comm::max_ep_size));
    if (!mpi.all_agree(gpus >= mpi.local_size() && mpi.size() >= min_ranks)) {
      if (mpi.rank() == 0)
        std::printf("SKIPPED: the MPI tests need one GPU per rank and at least %d ranks (%d rank(s) on this node, "
                    "%d GPU(s))\n", min_ranks, mpi.local_size(), gpus);
      return 77;
    }
    comm::select_device(mpi.local_rank());
    comm::nccl_comm nccl = comm::nccl_comm::bootstrap(mpi.world());
    mpitest::g_mpi = &mpi;
    mpitest::g_nccl = &nccl;
    // 0: NCCL's team; a size that does not divide the ranks is the session's error to report.
    mpitest::g_domain_size = static_cast<int>(mpitest::env_or("EPGRAPH_TEST_DOMAIN_SIZE", 0, 0, comm::max_ep_size));
    if (mpi.rank() == 0)
      std::printf("MPI tests on %d ranks, domain size %d\n", mpi.size(), mpitest::g_domain_size);  // 0: NCCL's team

    ::testing::InitGoogleTest(&argc, argv);
    auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
    if (mpi.rank() != 0) {
      delete listeners.Release(listeners.default_result_printer());
      listeners.Append(new mpitest::failure_printer(mpi.rank()));
    }
    const int local = RUN_ALL_TESTS();
    rc = mpi.all_agree(local == 0) ? 0 : 1;
    if (mpi.rank() == 0) std::printf("MPI tests on %d ranks: %s\n", mpi.size(), rc == 0 ? "all ranks passed" : "FAILED");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "epgraph_mpi_tests: %s\n", e.what());
    return 1;
  }
  return rc;
}
