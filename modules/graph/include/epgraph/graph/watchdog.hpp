#pragma once
// No silent hangs: NCCL 2.28 LSA barriers spin forever when a peer never arrives. Instead
// of a blocking synchronize, wait on an event with a deadline and, past it, describe where
// every rank was last seen (from the session's progress record).
#include <chrono>
#include <string>

#include "epgraph/comm/ep_session.hpp"
#include "epgraph/graph/cuda_raii.hpp"

namespace epgraph::graph {

/// Polls `done` until it completes (returns true) or `timeout` passes (returns false).
/// Throws on a CUDA error. A zero timeout waits forever. Not capture-safe.
bool wait_for(const event& done, std::chrono::duration<double> timeout);

/// A diagnostic naming this rank, the step, and every rank's last dispatch as seen here.
std::string describe_hang(const comm::ep_session& session, long long step, std::chrono::duration<double> waited);

}  // namespace epgraph::graph
