#pragma once
// The last step of creating a session with several domains: one small exchange with every
// remote rank, so that NCCL connects those peers here and never inside a step (setup_exchange.cpp
// says why), bounded by the session's deadline.
#include <atomic>

namespace epgraph::comm::detail {

struct session_state;

/// Collective over the EP group (every rank, after the agreement that zeroed the workspaces).
/// Throws when a remote rank did not take part within the agreement's wait: the exchange
/// communicator is then revoked, which ends NCCL's wait on the host and on the GPU.
void connect_remote_ranks(session_state& s);

/// Tests only: seconds the rank named here sleeps right before its setup exchange (a rank
/// that stalls there). -1: nobody.
struct setup_stall_for_tests {
  std::atomic<int> rank{-1};
  std::atomic<double> seconds{0};
};
setup_stall_for_tests& setup_stall() noexcept;

}  // namespace epgraph::comm::detail
