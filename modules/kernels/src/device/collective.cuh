#pragma once
// Numbered, checked and bounded collective launches: what every dispatch and combine CTA does
// around its LSA barrier (the protocol and its argument are in epgraph/comm/progress.hpp).
//
// Contract, per CTA b of a dispatch or combine launch:
//  1. begin_collective(): thread 0 takes the launch number of CTA b (an atomic counter in local
//     state, so every CTA of a launch gets the same number and nothing depends on NCCL's
//     internal epoch), marks CTA b running, and reads whether the session has a fatal fault.
//     A CTA that finds CTA b already running records overlapping_launch.
//  2. A refused CTA (fatal fault, or overlap) calls stop_collective(): it only writes a stopped
//     progress word into its slot of every rank, so their CTA b faults at once.
//  3. sync_collective(): arrive (NCCL), then write this CTA's progress word, from the thread
//     that stored NCCL's arrival to the same peer; check every peer's word until the deadline;
//     enter NCCL's wait only if all are in step. A peer's word is written after its arrival,
//     so that wait ends at once. Otherwise it records the fault, stops and returns false: the
//     caller skips all work that needs the peers. No path spins without a deadline.
//  4. end_collective(): clears the running mark.
#include <nccl.h>
#include <nccl_device.h>

#include <cuda/atomic>

#include "epgraph/comm/faults.cuh"
#include "epgraph/comm/progress.hpp"
#include "epgraph/comm/session_view.hpp"

namespace epgraph::kernels::device {

__device__ inline std::uint64_t global_timer_ns() {
  std::uint64_t t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}

/// A per-thread deadline that starts at the first failed poll, so the fast path never reads the
/// timer. A budget of 0 never passes.
class deadline {
 public:
  __device__ explicit deadline(std::uint64_t budget_ns) : budget_(budget_ns) {}
  __device__ bool passed() {
    if (budget_ == 0) return false;
    const std::uint64_t now = global_timer_ns();
    if (end_ == 0) end_ = now + budget_;
    return now > end_;
  }

 private:
  std::uint64_t budget_, end_ = 0;
};

/// Per-CTA state of one collective launch, in shared memory.
struct collective_state {
  std::uint64_t seq;            ///< this launch's number (1 = the session's first collective)
  unsigned long long missing;   ///< peers that did not arrive before the deadline
  int refused;                  ///< the session had a fatal fault, or CTA b was already running
  int owns_running_mark;
};

__device__ inline comm::device_faults* faults_of(const comm::session_view& v) {
  return v.local_at<comm::device_faults>(v.layout.faults);
}

__device__ inline void record_fatal(const comm::session_view& v, comm::fault_code code, comm::collective_kind kind,
                                    std::uint64_t seq, int peer = -1, std::uint64_t peer_word = 0,
                                    std::uint64_t missing = 0) {
  comm::fault_record f;
  f.code = code;
  f.op = kind;
  f.seq = seq;
  f.peer = peer;
  f.peer_word = peer_word;
  f.missing = missing;
  comm::device::record_fault(&faults_of(v)->fatal, f);
}

/// All threads. Ends with __syncthreads(): `st` is then valid in every thread.
__device__ inline void begin_collective(const comm::session_view& v, comm::collective_kind kind,
                                        collective_state& st) {
  if (threadIdx.x == 0) {
    auto* mark = v.local_at<unsigned long long>(v.layout.launches) + 2 * blockIdx.x;
    const unsigned long long seq = atomicAdd(&mark[0], 1ull) + 1;
    const unsigned long long was_running = atomicExch(&mark[1], 1ull);
    const bool fatal = comm::device::has_fatal_fault(faults_of(v));
    if (was_running) record_fatal(v, comm::fault_code::overlapping_launch, kind, seq);
    st.seq = seq;
    st.missing = 0;
    st.refused = fatal || was_running;
    st.owns_running_mark = !was_running;
  }
  __syncthreads();
}

/// Clears the running mark; after every thread of the CTA is done with this launch.
__device__ inline void end_collective(const comm::session_view& v, const collective_state& st) {
  __syncthreads();
  if (threadIdx.x == 0 && st.owns_running_mark)
    *reinterpret_cast<volatile unsigned long long*>(v.local_at<unsigned long long>(v.layout.launches) +
                                                    2 * blockIdx.x + 1) = 0;
}

/// Raises progress slot [this rank][this CTA] of rank `peer`'s window to `word` (release). Slots
/// only rise: a stopped word (top bit) stays, whatever a late kernel of this rank announces.
__device__ inline void announce(const comm::session_view& v, int peer, std::uint64_t word) {
  auto* slot = static_cast<unsigned long long*>(ncclGetLsaPointer(v.window, v.arrival_offset(v.rank, blockIdx.x), peer));
  comm::device::raise_release_sys(slot, word);
}

/// All threads: tells every rank (this one too) that this CTA stopped at collective `seq`.
__device__ inline void stop_collective(const comm::session_view& v, std::uint64_t seq) {
  for (int peer = threadIdx.x; peer < v.ep_size; peer += blockDim.x)
    announce(v, peer, comm::progress_word(seq, comm::collective_kind::stopped));
}

/// One thread per peer: polls the peer's progress word until it is in step, out of step,
/// stopped, or the deadline passed. Records what it found; true when the peer is in step.
__device__ inline bool await_peer(const comm::session_view& v, int peer, comm::collective_kind kind,
                                  collective_state& st) {
  auto* slot = v.window_at<unsigned long long>(v.layout.arrivals) + static_cast<std::size_t>(peer) * v.num_ctas +
               blockIdx.x;
  cuda::atomic_ref<unsigned long long, cuda::thread_scope_system> word(*slot);
  deadline clock(v.deadline_ns);
  for (;;) {
    const std::uint64_t w = word.load(cuda::memory_order_acquire);
    switch (comm::classify_peer(st.seq, kind, w)) {
      case comm::peer_state::arrived: return true;
      case comm::peer_state::out_of_step:
        record_fatal(v, comm::fault_code::collective_out_of_step, kind, st.seq, peer, w);
        return false;
      case comm::peer_state::stopped:
        record_fatal(v, comm::fault_code::peer_stopped, kind, st.seq, peer, w);
        return false;
      case comm::peer_state::waiting:
        if (clock.passed()) {
          atomicOr(&st.missing, 1ull << peer);
          return false;
        }
        break;
    }
  }
}

/// All threads: the CTA's LSA barrier with the step check (see the contract above). `ok` is
/// false when this CTA already failed (its peers are then told to stop). Returns true when the
/// barrier completed with every peer in step.
__device__ inline bool sync_collective(const ncclDevComm& dev, const comm::session_view& v,
                                       comm::collective_kind kind, bool ok, collective_state& st) {
  ncclLsaBarrierSession<ncclCoopCta> bar(ncclCoopCta(), dev, ncclTeamLsa(dev), dev.lsaBarrier, blockIdx.x);
  bar.arrive(ncclCoopCta(), cuda::memory_order_release);
  const int tid = threadIdx.x, peers = v.ep_size - 1;
  const int peer = tid + (v.rank <= tid ? 1 : 0);  // the peer NCCL's arrive stored to from this thread
  const std::uint64_t word = comm::progress_word(st.seq, ok ? kind : comm::collective_kind::stopped);
  if (tid < peers) announce(v, peer, word);
  else if (tid == peers) announce(v, v.rank, word);  // own slot, for peer_progress
  bool in_step = ok && (tid >= peers || await_peer(v, peer, kind, st));
  in_step = __syncthreads_and(in_step);
  if (in_step) {
    bar.wait(ncclCoopCta(), cuda::memory_order_acquire);
  } else if (ok) {
    if (tid == 0 && st.missing)
      record_fatal(v, comm::fault_code::peer_timeout, kind, st.seq, -1, 0, st.missing);
    stop_collective(v, st.seq);
  }
  return in_step;
}

}  // namespace epgraph::kernels::device
