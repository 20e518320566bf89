#include "epgraph/graph/watchdog.hpp"

#include <sstream>
#include <thread>

#include "epgraph/comm/error.hpp"

namespace epgraph::graph {

bool wait_for(const event& done, std::chrono::duration<double> timeout) {
  const auto start = std::chrono::steady_clock::now();
  for (auto pause = std::chrono::microseconds(2);; pause = std::min(pause * 2, std::chrono::microseconds(1000))) {
    const cudaError_t st = cudaEventQuery(done.get());
    if (st == cudaSuccess) return true;
    if (st != cudaErrorNotReady) EPG_CHECK_CUDA(st);
    if (timeout.count() > 0 && std::chrono::steady_clock::now() - start > timeout) return false;
    std::this_thread::sleep_for(pause);
  }
}

std::string describe_hang(const comm::ep_session& session, long long step, std::chrono::duration<double> waited) {
  std::ostringstream out;
  out << "epgraph watchdog: rank " << session.rank() << " did not finish step " << step << " within "
      << waited.count() << " s (peers did not reach it); dispatches started, as seen from this rank:";
  try {
    const auto seen = session.peer_progress();
    std::uint64_t most = 0;
    for (auto s : seen) most = std::max(most, s);
    for (std::size_t r = 0; r < seen.size(); ++r) {
      out << " rank " << r << "=" << seen[r];
      if (seen[r] < most) out << " (behind)";
    }
    out << ". Ranks marked behind never reached this step: check that they are alive and replay "
           "the same sequence of graphs.";
  } catch (const std::exception& e) {
    out << " (progress record unreadable: " << e.what() << ")";
  }
  return out.str();
}

}  // namespace epgraph::graph
