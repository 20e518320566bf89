#pragma once
// The host-side watchdog, for any runtime: wait for a step with a deadline and, past it, say
// where every rank was last seen. Host only, not capture-safe, any thread (it reads the
// session's progress record through a stream of the session's own).
//
// Inside epgraph's kernels every wait already ends at the session's deadline with a fault
// (ep_session::check_faults names the peers). The watchdog covers what lies outside them: a
// rank whose host stopped launching while the device deadline is off (deadline_seconds = 0),
// or a stall in the runtime's own kernels of the step.
//
//   graph::event done;
//   step.replay(stream); done.record(stream);
//   if (auto stalled = graph::watch_step(session, done, step_index, std::chrono::seconds(60))) {
//     log(*stalled);  // then abort the job (MPI_Abort) or the communicator
//   }
#include <chrono>
#include <optional>
#include <string>

#include "epgraph/comm/ep_session.hpp"
#include "epgraph/graph/cuda_raii.hpp"

namespace epgraph::graph {

/// Polls `done` until it completes (true) or `timeout` passes (false). A zero timeout waits
/// forever; a negative or non-finite one is a config error. Throws on a CUDA error.
bool wait_for(const event& done, std::chrono::duration<double> timeout);

/// Every rank's last collective as seen from this rank, e.g.
/// "rank 0 #5 (dispatch), rank 1 #4 (combine) (behind)"; ranks below the highest number are
/// marked behind, ranks that reported a fatal fault or left are marked stopped.
std::string describe_progress(const comm::ep_session& session);

/// A diagnostic naming this rank, the step, the time waited and describe_progress().
std::string describe_hang(const comm::ep_session& session, long long step, std::chrono::duration<double> waited);

/// Waits for `done` (an event recorded after step `step`) up to `timeout`: nullopt when the
/// step finished, else describe_hang().
std::optional<std::string> watch_step(const comm::ep_session& session, const event& done, long long step,
                                      std::chrono::duration<double> timeout);

}  // namespace epgraph::graph
