#include "epgraph/graph/watchdog.hpp"

#include <algorithm>
#include <cmath>
#include <sstream>
#include <thread>

#include "epgraph/comm/error.hpp"

namespace epgraph::graph {

bool wait_for(const event& done, std::chrono::duration<double> timeout) {
  if (!std::isfinite(timeout.count()) || timeout.count() < 0)
    comm::throw_config_error("wait_for timeout", "is " + std::to_string(timeout.count()) + " s",
                             "use a finite number of seconds >= 0 (0 waits forever)");
  const auto start = std::chrono::steady_clock::now();
  for (auto pause = std::chrono::microseconds(2);; pause = std::min(pause * 2, std::chrono::microseconds(1000))) {
    const cudaError_t st = cudaEventQuery(done.get());
    if (st == cudaSuccess) return true;
    if (st != cudaErrorNotReady) EPG_CHECK_CUDA(st);
    if (timeout.count() > 0 && std::chrono::steady_clock::now() - start > timeout) return false;
    std::this_thread::sleep_for(pause);
  }
}

std::string describe_progress(const comm::ep_session& session) {
  const auto seen = session.peer_progress();
  std::uint64_t most = 0;
  for (const auto& p : seen) most = std::max(most, p.seq);
  std::ostringstream out;
  bool first = true;
  for (std::size_t r = 0; r < seen.size(); ++r) {
    // Ranks of other NVLink domains leave no progress words here; NCCL carries their part.
    if (!session.view().in_domain(static_cast<int>(r))) continue;
    out << (first ? "" : ", ") << "rank " << r << " #" << seen[r].seq << " (" << comm::to_string(seen[r].kind) << ")";
    first = false;
    if (seen[r].stopped) out << " (stopped)";
    else if (seen[r].seq < most) out << " (behind)";
  }
  if (session.view().domain_size < session.config().ep_size)
    out << "; ranks of other NVLink domains are not visible here (they exchange through NCCL)";
  return out.str();
}

std::string describe_hang(const comm::ep_session& session, long long step, std::chrono::duration<double> waited) {
  std::ostringstream out;
  out << "epgraph watchdog: rank " << session.rank() << " did not finish step " << step << " within "
      << waited.count() << " s; last collective of every rank of its NVLink domain, as seen from this rank: ";
  try {
    out << describe_progress(session)
        << ". Ranks marked behind never reached the latest collective: check that they are alive and replay the same "
           "sequence of graphs.";
  } catch (const std::exception& e) {
    out << "(progress record unreadable: " << e.what() << ")";
  }
  return out.str();
}

std::optional<std::string> watch_step(const comm::ep_session& session, const event& done, long long step,
                                      std::chrono::duration<double> timeout) {
  if (wait_for(done, timeout)) return std::nullopt;
  return describe_hang(session, step, timeout);
}

}  // namespace epgraph::graph
