#pragma once
// EP session: the symmetric workspace, device communicator and local state of one rank.
//
//                                  collective?      allocates?  capture-safe?  bounded by the deadline?
//   constructor                    yes              yes         no             yes (but see below)
//   destructor                     yes, unless (*)  frees       no             yes
//   agreed / all_agree / barrier   yes              no          no             yes
//   check_faults                   yes              no          no             yes
//   read_faults, peer_progress     no (any thread)  no          no             -
//   read/reset_expert_load         no               no          no (syncs)     -
//   set_placement                  yes (agreed)     no          no (syncs)     yes
//   abort                          no               no          no             -
//   (*) after abort(), a failed host agreement, or while unwinding from an exception, teardown
//   is local: it tells the peers that this rank left (one domain only) and waits for nobody. Otherwise it agrees
//   with the peers (bounded); only when every rank is there does it call NCCL's release calls,
//   which may wait for the peers; else the window and device communicator are left to the
//   communicator, which frees them when it is destroyed or aborted.
//   "Bounded" means: device waits end after ep_config::deadline_seconds, host agreements after
//   twice that plus one second; the destructor's device synchronize also waits for any other
//   work on this GPU.
//
// Construction validates the config, checks it is identical on every rank, the loaded NCCL
// version, that the communicator is exactly the EP group and that the LSA team of each
// NVLink domain (ep_config::domain_size; 0 resolves to the NVLink team NCCL found, the same
// on every rank, and config() reports it) spans that domain. Every failure, including those
// only one rank sees (out of memory, say), is agreed: every rank throws together. NCCL's own
// collective calls inside (ncclCommSplit with several domains, window registration,
// ncclDevCommCreate) start only after every rank passed the agreement before them, and are not
// bounded by epgraph. The first agreement is a collective on the communicator you pass; if it
// is that communicator's first collective, NCCL connects its peers inside the call and waits on
// the host for every one: when a peer never comes (it never creates its session), this rank
// revokes the communicator you passed at the deadline to end that wait (any other work of
// yours on it ends too), and the error says to abort it. The exchange that connects the peers
// of other domains at the end of setup is bounded the same way, on the session's own
// communicator.
//
// Several domains: the window and device communicator belong to this rank's domain (split off
// the EP communicator); ranks of other domains are reached by NCCL point-to-point on a
// communicator of the session's own (docs/domains.md). NCCL's exchanges have no deadline of
// their own: an exchange guard (a thread of the session) revokes that communicator when an
// exchange runs longer than twice the deadline plus a second, recording exchange_timeout and
// failing the session; the host agreements after setup run over NCCL on another communicator
// of the session's own (one domain: through the window's mailbox), wait that much longer, and
// revoke that communicator when one misses its deadline, so nothing unfinished is left on the
// communicator the user passed. abort() cannot tell the peers there: those of this domain fail at their deadline,
// those of other domains at their guard's limit; it revokes the session's communicator between
// domains at once. Step graphs must be destroyed before such a session (NCCL waits for them
// when the session aborts or destroys that communicator).
//
// Receive buffers (recv_*) hold this step's tokens from the end of dispatch until this rank's
// combine starts: a peer's next dispatch may write them as soon as this rank entered combine.
//
// The session is movable; what is planned from it (ops, step plans, step graphs) holds a
// session_link, which survives moves and expires when the session is destroyed: launching
// through an expired link returns an error instead of touching freed memory. Graphs must not
// outlive their session. The borrowed communicator must outlive the session, and be blocking
// (NCCL's default): with a non-blocking one (config.blocking = 0, NCCL_COMM_BLOCKING=0) NCCL
// calls return ncclInProgress, which setup does not wait for; not supported. A moved-from
// session may only be destroyed or moved into; its throwing calls say so, its noexcept
// accessors must not be called.

#include <nccl.h>

#include <cuda_runtime_api.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string_view>
#include <vector>

#include "epgraph/comm/ep_config.hpp"
#include "epgraph/comm/expert_placement.hpp"
#include "epgraph/comm/faults.hpp"
#include "epgraph/comm/nccl_comm.hpp"
#include "epgraph/comm/progress.hpp"
#include "epgraph/comm/session_view.hpp"
#include "epgraph/comm/workspace_layout.hpp"

struct ncclDevComm;

namespace epgraph::comm {

namespace detail {
struct session_state;
}  // namespace detail

/// What ops, plans and graphs keep of their session. Copyable, host only.
class session_link {
 public:
  /// Linked to no session: launch_status() is cudaSuccess and agreed() runs the step locally
  /// (for host-only fakes of a step).
  session_link() = default;
  /// cudaSuccess while the session lives and has no fatal fault known to the host;
  /// cudaErrorInvalidResourceHandle once it is destroyed (nothing is launched), and
  /// cudaErrorNotPermitted once it failed or was aborted. Cheap (one weak_ptr lock); any thread.
  cudaError_t launch_status() const noexcept;
  /// ep_session::agreed of the linked session; throws if it was destroyed.
  void agreed(std::string_view what, const std::function<void()>& step) const;

 private:
  friend class ep_session;
  std::weak_ptr<detail::session_state> state_;
  bool linked_ = false;
};

class ep_session {
 public:
  ep_session(nccl_comm_ref comm, ep_config config);
  ~ep_session();
  ep_session(ep_session&&) noexcept;
  ep_session& operator=(ep_session&&) noexcept;
  ep_session(const ep_session&) = delete;
  ep_session& operator=(const ep_session&) = delete;

  const ep_config& config() const noexcept;
  const workspace_layout& layout() const noexcept;
  int rank() const noexcept;
  nccl_comm_ref comm() const noexcept;
  const ncclDevComm& dev_comm() const noexcept;
  const session_view& view() const noexcept;
  session_link link() const noexcept;
  /// The session's own communicator for the ranks outside this rank's NVLink domain (a
  /// duplicate of the EP communicator); nullptr with one domain. Revoked (never freed) by the
  /// exchange guard or abort(); valid until the session is destroyed.
  ncclComm_t remote_comm() const noexcept;
  /// Held around every NCCL call on remote_comm(): the exchanges' enqueue and the exchange
  /// guard's revoke (NCCL lets one thread use a communicator at a time). Internal to epgraph.
  /// Shared, so that an op holding it never outlives the mutex.
  std::shared_ptr<std::timed_mutex> remote_calls() const noexcept;

  // Receive side, this rank's memory: valid from the end of dispatch until this rank's combine starts.
  const std::int32_t* recv_counts() const noexcept;          ///< [ep]
  const std::int32_t* recv_topk_ids() const noexcept;        ///< [ep][max_tokens][k]
  const void* recv_payload(int i) const;                     ///< [ep][max_tokens][row_bytes_i]
  const std::int32_t* local_expert_counts() const noexcept;  ///< [local_slots] (after summarize)

  /// Load statistics of this rank, accumulated on the device by every summarize since the
  /// session began or was last reset (64-bit: they do not wrap in any realistic run).
  struct expert_load {
    std::vector<std::uint64_t> tokens;  ///< [local_slots] received (token, expert) pairs per local expert slot
    std::uint64_t received = 0;         ///< received tokens (each token once, however many local experts)
  };
  /// Local; synchronizes the device first (the steps enqueued so far are counted). Outside
  /// capture: it copies to the host. Gather the ranks' loads yourself for a global view.
  expert_load read_expert_load() const;
  /// Local; zeroes the statistics after the device is idle. Outside capture.
  void reset_expert_load();

  /// Moves and replicates experts (ep_config::expert_slots_per_rank > 0). Collective: every
  /// rank passes the same table; each checks it (its experts and slots, validate_placement),
  /// the ranks compare a hash, then each waits for its device to be idle and copies the table
  /// into the session's memory, where the next dispatch reads it: captured step graphs keep
  /// working, no recapture. Call it between steps, outside capture. A table that does not fit,
  /// or differs between ranks, throws on every rank and changes nothing. If the copy itself
  /// fails on a rank (a broken device), the ranks may hold different tables: every rank then
  /// throws and the session refuses further runs (destroy it).
  void set_placement(const expert_placement& placement);
  /// The table in use (the contiguous rule when the session keeps none).
  const expert_placement& placement() const;
  /// Its device copy, for expert stages (which logical expert a slot serves); all null
  /// without a table.
  placement_ref placement_table() const noexcept;
  /// The workspace combine region [ep][max_tokens][hidden]: an expert stage that writes
  /// here needs no prepare-combine (zero copy).
  void* combine_region() const noexcept;

  /// This rank's fault records as they are now (through a stream of the session's own: it
  /// does not wait for other work). Synchronize the stream the ops ran on first for a
  /// complete picture. Local; any thread.
  device_faults read_faults() const;
  /// Collective: waits for this GPU to be idle (epgraph's kernels end by their deadline),
  /// gathers every rank's faults and, if any rank has one, throws on every rank an error
  /// listing them. Input faults are cleared; a fatal fault makes the session refuse further
  /// runs (launch_status) until it is destroyed.
  void check_faults();
  /// Local: clears this rank's input fault (a fatal fault is never cleared).
  void clear_input_faults();

  /// Where every rank of this rank's domain was last seen from this rank (its progress words
  /// in this rank's window; ranks of other domains show nothing). Local; any thread, also
  /// while a step hangs (a stream of its own).
  std::vector<collective_position> peer_progress() const;

  /// Local, never throws: this session refuses further runs, every peer's kernels and host
  /// collectives of this session fail at once (instead of at their deadline) naming this
  /// rank, and the destructor skips its collective step. With several domains no peer learns
  /// it at once (there is no mailbox): the peers of this domain fail at their device deadline,
  /// those of other domains at their exchange guard's limit, host agreements at their deadline;
  /// the session's communicator between domains is revoked (its exchanges end). If a
  /// collective of the communicator itself was left unfinished, also abort the communicator
  /// (nccl_comm::abort).
  void abort() noexcept;
  /// True once a fatal fault was seen by the host, an agreement failed, abort() ran, or (several
  /// domains) the exchange guard ended an exchange that ran out of time.
  bool failed() const noexcept;

  /// Collective (bounded by the deadline): runs `step` on every rank; if it throws on any
  /// rank, every rank throws (the failing rank its own error, the others one naming it).
  /// One thread at a time per session; not capture-safe.
  void agreed(std::string_view what, const std::function<void()>& step) const;
  /// Collective: true only if every rank passes ok == true.
  bool all_agree(bool ok) const;
  /// Collective host barrier (through the window).
  void barrier() const;

 private:
  detail::session_state& state() const;  // throws on a moved-from session
  std::shared_ptr<detail::session_state> state_;
  int uncaught_at_creation_ = 0;  // teardown while unwinding is local
};

}  // namespace epgraph::comm
