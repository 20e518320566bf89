// Plain host C++ (no nvcc): the public headers must compile without CUDA's compiler, and those of
// epgraph::comm, kernels and graph without MPI. Returns 0 when the installed library's version is
// the one find_package reported (EPGRAPH_FOUND_VERSION, from the consumer's CMakeLists.txt).
#include <cstdio>
#include <string_view>

#include "epgraph/comm/device_buffer.hpp"
#include "epgraph/comm/device_comm.hpp"
#include "epgraph/comm/error.hpp"
#include "epgraph/comm/expert_major_layout.hpp"
#include "epgraph/comm/expert_placement.hpp"
#include "epgraph/comm/nccl_comm.hpp"
#include "epgraph/comm/select_device.hpp"
#include "epgraph/comm/symmetric_window.hpp"
#include "epgraph/comm/version.hpp"
#include "epgraph/comm/workspace_layout.hpp"
#include "epgraph/graph/step.hpp"
#include "epgraph/graph/watchdog.hpp"
#include "epgraph/kernels/expert_major.hpp"
#include "epgraph/kernels/ops.hpp"

#if defined(EPGRAPH_CONSUMER_WITHOUT_MPI) && defined(MPI_VERSION)
#error "a public header of epgraph::comm, kernels or graph included <mpi.h>"
#endif

int main() {
  epgraph::comm::ep_config c;
  c.ep_size = 2;
  c.max_tokens_per_rank = 128;
  c.top_k = 8;
  c.num_experts = 256;
  c.hidden = 7168;
  c.payloads = {{"hidden", 7168 * 2}};
  const auto bytes = epgraph::comm::workspace_bytes_per_rank(c);
  std::printf("workspace bytes per rank: %zu\n", bytes);
  std::printf("epgraph %s (find_package: %s)\n", epgraph::version().data(), EPGRAPH_FOUND_VERSION);
  if (epgraph::version() != std::string_view(EPGRAPH_FOUND_VERSION)) {
    std::printf("the library's version() differs from the package version\n");
    return 1;
  }
  return bytes > 2 * 128 * 7168 * 2 ? 0 : 1;
}
