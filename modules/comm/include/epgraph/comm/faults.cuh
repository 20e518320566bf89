#pragma once
// Device side of faults.hpp (nvcc only): recording a fault from a kernel.
#include "epgraph/comm/faults.hpp"

namespace epgraph::comm::device {

/// Records `f` into `slot` unless a fault is already there: the first fault wins. Any thread.
/// The host reads the record only after the kernel finished, so the fields after the code
/// need no atomics.
__device__ inline bool record_fault(fault_record* slot, const fault_record& f) {
  if (atomicCAS(reinterpret_cast<int*>(&slot->code), 0, static_cast<int>(f.code)) != 0) return false;
  slot->token = f.token;
  slot->entry = f.entry;
  slot->value = f.value;
  slot->peer = f.peer;
  slot->op = f.op;
  slot->seq = f.seq;
  slot->peer_word = f.peer_word;
  slot->missing = f.missing;
  return true;
}

/// Raises the 64-bit word at `p` (in any rank's memory) to at least `value`, at system scope.
/// Reductions: the thread does not wait for the old value. The release form first makes the
/// thread's earlier writes visible (a system fence, about a microsecond); the relaxed form is
/// for words whose readers need no data behind them.
__device__ inline void raise_release_sys(unsigned long long* p, unsigned long long value) {
  asm volatile("red.release.sys.global.max.u64 [%0], %1;" ::"l"(p), "l"(value) : "memory");
}
__device__ inline void raise_relaxed_sys(unsigned long long* p, unsigned long long value) {
  asm volatile("red.relaxed.sys.global.max.u64 [%0], %1;" ::"l"(p), "l"(value) : "memory");
}

/// True once a fatal fault is recorded: later collective launches only tell the peers.
__device__ inline bool has_fatal_fault(const device_faults* faults) {
  return *reinterpret_cast<const volatile std::int32_t*>(&faults->fatal.code) != 0;
}

}  // namespace epgraph::comm::device
