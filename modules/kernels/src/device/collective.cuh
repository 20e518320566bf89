#pragma once
// Numbered, checked and bounded collective launches: what every dispatch and combine CTA does
// around its LSA barrier (the protocol and its argument are in epgraph/comm/progress.hpp).
//
// Contract, per CTA b of a dispatch or combine launch:
//  1. At kernel start the CTA issues the loads it needs soon (the barrier session's epoch, the
//     announcer's window lookup, dispatch's T, combine's recorded count), then claims CTA
//     index b with one atomic on its launch word (numbering the launch without NCCL's
//     internal epoch) and reads whether the session has a fatal fault: dispatch before its
//     work (begin_collective; its look-back needs the number), combine beside NCCL's arrive
//     (arrive_and_claim; its barrier is its first synchronization, after griddepcontrol.wait
//     and two loads). A launch that finds CTA b claimed
//     records overlapping_launch and marks the word overlapped for good, so every later
//     launch is refused as well.
//  2. A refused CTA (fatal fault, or overlap) never waits at NCCL's barrier and never writes
//     an in-step word; stop_collective() writes a stopped word into its slot at every rank,
//     so their CTA b faults at once. (A refused dispatch never arrives; a refused combine has
//     arrived, see arrive_and_claim. Its barrier session writes back the epoch it read; after
//     a refusal no launch of the session arrives again, so nothing uses it.)
//  3. The barrier (sync_collective, or announce_and_wait after arrive_and_claim): arrive
//     (NCCL, release), then write this CTA's progress word, from the thread that stored
//     NCCL's arrival to the same peer; check every peer's word until the deadline; enter
//     NCCL's wait only if all are in step. A peer writes its word only after its arrival
//     store, so that wait is bounded even when a peer's process dies mid-kernel. Otherwise it
//     records the fault, stops and returns false: the caller skips all work that needs the
//     peers. No path spins without a deadline.
//  4. end_collective(), the kernel's last act after the barrier session wrote its epoch back:
//     returns the claim on CTA b once every warp is done.
// Cost and the alternatives measured (a word announced before arriving is ~0.35 us cheaper
// but leaves peers in NCCL's wait if this process dies in the microsecond between the two):
// docs/perf-notes.md, v8.
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
  int refused;                  ///< the session had a fatal fault, or launches of it overlapped
  int overlapped;               ///< another launch of the session holds (or held) CTA b
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

/// This CTA's launch word (on a cache line of its own; the encoding is in progress.hpp).
__device__ inline unsigned long long* launch_word(const comm::session_view& v) {
  return reinterpret_cast<unsigned long long*>(v.local + v.layout.launches.offset +
                                               blockIdx.x * comm::launch_word_stride);
}

/// The last thread of begin_collective, or the claiming thread of arrive_and_claim: claims CTA index b
/// with one atomic on its launch word and reads whether the session has a fatal fault.
__device__ inline void claim_cta(const comm::session_view& v, comm::collective_kind kind, collective_state& st) {
  const unsigned long long before = atomicAdd(launch_word(v), comm::launch_claim_increment);
  const bool fatal = comm::device::has_fatal_fault(faults_of(v));
  const comm::launch_claim claim = comm::claim_launch(before);
  if (claim.overlapping) {  // misuse: only this path pays a second atomic
    atomicOr(launch_word(v), comm::launch_overlapped_bit);
    record_fatal(v, comm::fault_code::overlapping_launch, kind, claim.seq);
  }
  st.seq = claim.seq;
  st.missing = 0;
  st.refused = fatal || claim.refused;
  st.overlapped = claim.refused;
}

/// All threads. The last thread claims (at small T it holds no token, so the threads that do
/// load their ids beside the atomic). Ends with __syncthreads(): `st` is then valid in every
/// thread. Callers issue the loads they need soon before this, so their latency overlaps the
/// atomic's.
__device__ inline void begin_collective(const comm::session_view& v, comm::collective_kind kind,
                                        collective_state& st) {
  if (threadIdx.x == blockDim.x - 1) claim_cta(v, kind, st);
  __syncthreads();
}

/// All threads, as the kernel's last act, after the barrier session was closed (its epoch
/// written back): once every warp is done, thread 0 gives the claim on CTA b back. In stream
/// order nothing waits for it; it matters to a launch of the session that overlaps this one
/// (misuse), which finds CTA b taken until this kernel's last warp is done. Relaxed: a release
/// here cost 0.27 us per op (a fence the kernel's end waits for), and would not close the
/// window that remains (such a launch reads the epoch before it claims; perf-notes v8).
__device__ inline void end_collective(const comm::session_view& v) {
  __syncthreads();
  if (threadIdx.x == 0)
    asm volatile("red.relaxed.gpu.global.add.u64 [%0], %1;" ::"l"(launch_word(v)), "l"(~0ull) : "memory");
}

/// Progress slot [this rank][this CTA] in the window of `peer` (an LSA rank of this domain).
/// Slots only rise (max reductions): a stopped word (top bit) stays, whatever a late kernel of
/// this rank announces.
__device__ inline unsigned long long* own_slot_at(const comm::session_view& v, int peer) {
  return static_cast<unsigned long long*>(ncclGetLsaPointer(v.window, v.arrival_offset(v.lsa_rank, blockIdx.x), peer));
}

/// All threads: tells every rank of the domain (this one too) that this CTA stopped at
/// collective `seq`. Ranks of other domains learn it from the word sent with the rows.
__device__ inline void stop_collective(const comm::session_view& v, std::uint64_t seq) {
  for (int peer = threadIdx.x; peer < v.domain_size; peer += blockDim.x)
    comm::device::raise_release_sys(own_slot_at(v, peer), comm::progress_word(seq, comm::collective_kind::stopped));
}

/// Where a thread announces its CTA's progress: thread i < ep-1 into slot [rank][b] of the peer
/// NCCL's arrive stores to from the same thread (i, skipping this rank), thread ep-1 into this
/// rank's own window (read by peer_progress); the others nowhere. Chosen at kernel start, so
/// the window lookup (a load of NCCL's window descriptor) overlaps the launch claim.
struct announcer {
  unsigned long long* slot;  ///< nullptr: this thread does not announce
  int peer;                  ///< whose word this thread checks (an LSA rank), or -1
};
__device__ inline announcer announcer_of(const comm::session_view& v) {
  const int i = static_cast<int>(threadIdx.x), peers = v.domain_size - 1;
  if (i > peers) return {nullptr, -1};
  if (i == peers) return {own_slot_at(v, v.lsa_rank), -1};
  const int peer = i + (v.lsa_rank <= i ? 1 : 0);
  return {own_slot_at(v, peer), peer};
}

/// One thread per domain peer (`peer`: its LSA rank): polls the peer's progress word until it
/// is in step, out of step, stopped, or the deadline passed. Records what it found (naming the
/// peer's EP rank); true when the peer is in step.
__device__ inline bool await_peer(const comm::session_view& v, int peer, comm::collective_kind kind,
                                  collective_state& st) {
  auto* slot = v.window_at<unsigned long long>(v.layout.arrivals) + static_cast<std::size_t>(peer) * v.num_ctas +
               blockIdx.x;
  cuda::atomic_ref<unsigned long long, cuda::thread_scope_system> word(*slot);
  deadline clock(v.deadline_ns);
  for (;;) {
    const std::uint64_t w = word.load(cuda::memory_order_relaxed);
    const int peer_rank = v.domain_first + peer;
    switch (comm::classify_peer(st.seq, kind, w)) {
      case comm::peer_state::arrived: return true;
      case comm::peer_state::out_of_step:
        record_fatal(v, comm::fault_code::collective_out_of_step, kind, st.seq, peer_rank, w);
        return false;
      case comm::peer_state::stopped:
        record_fatal(v, comm::fault_code::peer_stopped, kind, st.seq, peer_rank, w);
        return false;
      case comm::peer_state::waiting:
        if (clock.passed()) {
          atomicOr(&st.missing, 1ull << peer_rank);
          return false;
        }
        break;
    }
  }
}

/// Checks the words remote ranks (other domains) sent with this step's rows and combine rows
/// against this rank's last dispatch word: the same number and kind means the exchange paired
/// the same dispatch on both sides. All threads; true when all match. A mismatch records one
/// fault, for the lowest remote rank (dispatch words before combine words), so the error
/// names the same rank every time.
__device__ inline bool remote_in_step(const comm::session_view& v, std::uint64_t mine, collective_state& st) {
  __shared__ int s_first;
  const int remote = v.ep_size - v.domain_size;
  const auto* words = v.remote_at<std::uint64_t>(v.layout.remote_words);
  if (threadIdx.x == 0) s_first = 2 * remote;
  __syncthreads();
  for (int i = threadIdx.x; i < 2 * remote; i += blockDim.x)
    if (words[i] != mine) atomicMin(&s_first, i);
  __syncthreads();
  const int first = s_first;
  if (first < 2 * remote && threadIdx.x == 0) {
    const std::uint64_t w = words[first];
    const bool stopped = comm::progress_kind(w) == comm::collective_kind::stopped;
    record_fatal(v, stopped ? comm::fault_code::peer_stopped : comm::fault_code::collective_out_of_step,
                 comm::collective_kind::combine, st.seq, v.remote_rank(first % remote), w);
  }
  return first == 2 * remote;
}

/// The session of this CTA's LSA barrier (index = CTA index); kernels open it at their start:
///   device::barrier_session bar(ncclCoopCta(), dev, ncclTeamLsa(dev), dev.lsaBarrier, blockIdx.x);
using barrier_session = ncclLsaBarrierSession<ncclCoopCta>;

/// All threads, after arriving (and, for a refused CTA, never): writes this CTA's progress
/// word, from the thread that stored NCCL's arrival to the same peer, checks every peer's word
/// until the deadline and enters NCCL's wait only if all are in step. `ok` is false when this
/// CTA already failed (its peers are then told to stop). Returns true when the barrier
/// completed with every peer in step.
__device__ inline bool announce_and_wait(barrier_session& bar, const comm::session_view& v, comm::collective_kind kind,
                                         bool ok, collective_state& st, const announcer& me) {
  if (me.slot) comm::device::raise_relaxed_sys(me.slot, comm::progress_word(st.seq, ok ? kind : comm::collective_kind::stopped));
  bool in_step = ok && (me.peer < 0 || await_peer(v, me.peer, kind, st));
  in_step = __syncthreads_and(in_step);
  if (in_step) {
    bar.wait(ncclCoopCta(), cuda::memory_order_acquire);
  } else if (ok) {
    if (threadIdx.x == 0 && st.missing)
      record_fatal(v, comm::fault_code::peer_timeout, kind, st.seq, -1, 0, st.missing);
    stop_collective(v, st.seq);
  }
  return in_step;
}

/// All threads: the CTA's LSA barrier with the step check (see the contract above), for a
/// CTA that claimed at its start (dispatch: its look-back needs the number early).
__device__ inline bool sync_collective(barrier_session& bar, const comm::session_view& v, comm::collective_kind kind,
                                       bool ok, collective_state& st, const announcer& me) {
  bar.arrive(ncclCoopCta(), cuda::memory_order_release);
  return announce_and_wait(bar, v, kind, ok, st, me);
}

/// All threads, for a kernel whose barrier is its first synchronization (combine): NCCL's arrive, and the
/// claim of CTA b taken beside it by a thread that stores no arrival. The arrival stores are
/// release stores, which wait for every access of the CTA before the arrive's __syncthreads;
/// a claim before it put the atomic's round trip in front of that fence (~0.75 us at T=1,
/// perf-notes v8). Ends with __syncthreads(): `st` is then valid in every thread.
/// A refused CTA has then arrived. That is harmless: it writes a stopped word and no in-step
/// word, so no peer enters NCCL's wait on its account, and after a refusal no launch of the
/// session arrives again. An overlapping launch of this kind arrives with the epoch the other
/// launch also used or has written back; the outputs of that step are void either way (the
/// fault is fatal and check_faults throws on every rank).
__device__ inline void arrive_and_claim(barrier_session& bar, const comm::session_view& v, comm::collective_kind kind,
                                        collective_state& st) {
  bar.arrive(ncclCoopCta(), cuda::memory_order_release);
  // NCCL's arrive stores from threads 0 .. L-2; the first thread of the next warp claims.
  const unsigned claimer = ((static_cast<unsigned>(v.domain_size) + 30u) / 32u) * 32u;
  if (threadIdx.x == (claimer < blockDim.x ? claimer : 0u)) claim_cta(v, kind, st);
  __syncthreads();
}

}  // namespace epgraph::kernels::device
