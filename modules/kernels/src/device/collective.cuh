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
//     enter NCCL's wait only if all are in step. A peer writes its word only after it issued
//     its arrival, so that wait is bounded (in practice it finds the arrival there already).
//     Otherwise it records the fault, stops and returns false: the caller skips all work that
//     needs the peers. No path spins without a deadline.
//     Cost: the word is a relaxed reduction and the check relaxed loads (NCCL's release/acquire
//     pair still orders the data), so the barrier pays one more L2 round trip than NCCL's alone.
//     The caller opens the barrier session at kernel start, so its epoch load overlaps
//     begin_collective's atomics instead of adding to the barrier's latency.
//  4. end_collective(): clears the running mark (from the barrier on, another launch may start).
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

/// A per-thread deadline that starts at the first failed poll. It reads the timer only every
/// 32nd poll, so a spinning thread sees the word it waits for one load after it lands, not a
/// timer read later. A budget of 0 never passes.
class deadline {
 public:
  __device__ explicit deadline(std::uint64_t budget_ns) : budget_(budget_ns) {}
  __device__ bool passed() {
    if (budget_ == 0 || (polls_++ & 31u) != 0) return false;
    const std::uint64_t now = global_timer_ns();
    if (end_ == 0) end_ = now + budget_;
    return now > end_;
  }

 private:
  std::uint64_t budget_, end_ = 0;
  unsigned polls_ = 0;
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

/// This CTA's launch word (on a cache line of its own).
__device__ inline unsigned long long* launch_word(const comm::session_view& v) {
  return reinterpret_cast<unsigned long long*>(v.local + v.layout.launches.offset +
                                               blockIdx.x * comm::launch_word_stride);
}

/// All threads. Ends with __syncthreads(): `st` is then valid in every thread. One atomic per
/// CTA: launches[b] holds 2 x (launches so far) + 1 while one runs, so adding 3 both numbers
/// this launch and marks it running; finding the mark already set means another launch of this
/// session holds CTA index b right now.
__device__ inline void begin_collective(const comm::session_view& v, comm::collective_kind kind,
                                        collective_state& st) {
  if (threadIdx.x == 0) {
    auto* mark = launch_word(v);
    const unsigned long long before = atomicAdd(mark, 3ull);
    const bool fatal = comm::device::has_fatal_fault(faults_of(v));
    const bool was_running = before & 1u;
    const std::uint64_t seq = (before >> 1) + 1;
    if (was_running) record_fatal(v, comm::fault_code::overlapping_launch, kind, seq);
    st.seq = seq;
    st.missing = 0;
    st.refused = fatal || was_running;
    st.owns_running_mark = !was_running;
  }
  __syncthreads();
}

/// Clears the running mark (thread 0, once this CTA is past its barrier or refused). A
/// reduction: nobody waits for it.
__device__ inline void end_collective(const comm::session_view& v, const collective_state& st) {
  if (threadIdx.x == 0 && st.owns_running_mark)
    asm volatile("red.relaxed.gpu.global.and.b64 [%0], %1;" ::"l"(launch_word(v)), "l"(~1ull) : "memory");
}

/// Progress slot [this rank][this CTA] in rank `peer`'s window. Slots only rise (max
/// reductions): a stopped word (top bit) stays, whatever a late kernel of this rank announces.
__device__ inline unsigned long long* own_slot_at(const comm::session_view& v, int peer) {
  return static_cast<unsigned long long*>(ncclGetLsaPointer(v.window, v.arrival_offset(v.rank, blockIdx.x), peer));
}

/// All threads: tells every rank (this one too) that this CTA stopped at collective `seq`.
__device__ inline void stop_collective(const comm::session_view& v, std::uint64_t seq) {
  for (int peer = threadIdx.x; peer < v.ep_size; peer += blockDim.x)
    comm::device::raise_release_sys(own_slot_at(v, peer), comm::progress_word(seq, comm::collective_kind::stopped));
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
    const std::uint64_t w = word.load(cuda::memory_order_relaxed);
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

/// The session of this CTA's LSA barrier (index = CTA index); kernels open it at their start:
///   device::barrier_session bar(ncclCoopCta(), dev, ncclTeamLsa(dev), dev.lsaBarrier, blockIdx.x);
using barrier_session = ncclLsaBarrierSession<ncclCoopCta>;

/// All threads: the CTA's LSA barrier with the step check (see the contract above). `ok` is
/// false when this CTA already failed (its peers are then told to stop). Returns true when the
/// barrier completed with every peer in step.
__device__ inline bool sync_collective(barrier_session& bar, const comm::session_view& v, comm::collective_kind kind,
                                       bool ok, collective_state& st) {
  bar.arrive(ncclCoopCta(), cuda::memory_order_release);
  const int tid = threadIdx.x, peers = v.ep_size - 1;
  const int peer = tid + (v.rank <= tid ? 1 : 0);  // the peer NCCL's arrive stored to from this thread
  const std::uint64_t word = comm::progress_word(st.seq, ok ? kind : comm::collective_kind::stopped);
  if (tid < peers) comm::device::raise_relaxed_sys(own_slot_at(v, peer), word);
  else if (tid == peers) comm::device::raise_relaxed_sys(own_slot_at(v, v.rank), word);  // for peer_progress
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
