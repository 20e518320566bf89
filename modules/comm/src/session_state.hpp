#pragma once
// The state behind an ep_session, shared with its session_links (weakly). Private to comm.
#include <nccl.h>

#include <atomic>
#include <memory>
#include <mutex>

#include "agreement.hpp"
#include "exchange_guard.hpp"
#include "epgraph/comm/device_buffer.hpp"
#include "epgraph/comm/device_comm.hpp"
#include "epgraph/comm/ep_config.hpp"
#include "epgraph/comm/nccl_comm.hpp"
#include "epgraph/comm/expert_placement.hpp"
#include "epgraph/comm/session_view.hpp"
#include "epgraph/comm/symmetric_window.hpp"
#include "epgraph/comm/workspace_layout.hpp"

namespace epgraph::comm::detail {

struct session_state {
  ep_config config;
  expert_placement placement;  ///< the table in use (the contiguous rule without a table)
  workspace_layout layout;
  ncclComm_t comm;
  int rank;
  std::atomic<bool> failed{false};  ///< launches are refused (launch_status)
  /// Held around every NCCL call on `remote` (ep_session::remote_calls); shared with the ops'
  /// transports, which may outlive the session.
  std::shared_ptr<std::timed_mutex> remote_calls = std::make_shared<std::timed_mutex>();
  rank_agreement agree;
  unique_handle<stream_traits> monitor;  ///< read_faults, peer_progress: never blocked by other work
  // Declared in setup order, so members are destroyed in the order NCCL asks for:
  // local state, devComm, window (deregister + free), then the communicators split off.
  /// With several domains (else empty): this rank's domain, split off the EP communicator
  /// (window and device communicator live on it, so LSA barriers stay inside the domain), and
  /// a duplicate of the EP communicator for the point-to-point exchanges with the other
  /// domains, so steps captured into graphs never share a communicator with the session's
  /// host agreements.
  /// Remote state (workspace_layout): freed after the communicators, which may hold NCCL's
  /// graph registrations of it.
  symmetric_memory remote_memory;
  nccl_comm domain;
  nccl_comm remote;
  /// With several domains: the communicator of the host agreements after setup (another
  /// duplicate of the EP communicator; rank_agreement::use_own_communicator).
  nccl_comm agreement;
  symmetric_window window;
  device_comm dev;
  device_buffer local;
  session_view view{};
  /// With several domains: the deadline of the exchanges (exchange_guard.hpp). Stopped first
  /// in ~session_state; when it aborted `remote`, that communicator is only released.
  std::unique_ptr<exchange_guard> guard;
  /// NCCL's release calls (ncclDevCommDestroy, ncclCommWindowDeregister) may wait for the
  /// peers. They run only when every rank is known to be in teardown (or failed setup
  /// together); otherwise the window and device communicator are left to the communicator,
  /// which frees them when it is destroyed or aborted.
  bool release_nccl = true;

  session_state(nccl_comm_ref c, ep_config cfg);
  ~session_state();
  session_state(const session_state&) = delete;
  session_state& operator=(const session_state&) = delete;

  void build_view();
  /// Collective (bounded by the deadline) unless `local_only`: then it tells the peers that
  /// this rank left and waits for nobody. Never throws.
  void teardown(bool local_only) noexcept;
  device_faults read_faults() const;
};

}  // namespace epgraph::comm::detail
