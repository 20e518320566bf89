#pragma once
// Claimed tokens in the dispatch push (dispatch.cu, step 4). A CTA with a large chunk offers it
// through a claim word; its warps claim whole tokens one at a time, and warps whose chunk is
// done claim from other CTAs' chunks. SMs do not get equal shares of the NVLink stores, so
// equal fixed chunks waited for the slowest SM (probe tests/probes/link_rates.cu,
// docs/perf-notes.md v26).
//
// Contract:
//  * Every dispatch CTA writes its word in every launch, tagged with the launch's look-back
//    tag: (tag, 0) with release once its slots are written when it offers its chunk, else
//    (tag, kNoClaims). A word is then never older than the previous collective, so a 32-bit
//    tag that wrapped around never matches a stale word.
//  * Only words that carry this launch's tag are claimed from; a claim's acquire (lane 0) and
//    __syncwarp make that chunk's slots (token_slots) visible to the whole warp.
//  * Every token of an offered chunk is returned by exactly one claim; a claim past the
//    chunk's end moves the warp on. Nothing spins.
#include <cuda/atomic>

#include <cstdint>

#include "epgraph/comm/session_view.hpp"
#include "epgraph/comm/workspace_layout.hpp"

namespace epgraph::kernels::device {

/// The count of a claim word whose chunk is not offered: no chunk is this long.
constexpr unsigned int kNoClaims = 0x7fffffffu;

/// A claim word: launch tag and tokens claimed so far.
__device__ inline unsigned long long claim_word(unsigned int tag, unsigned int count) {
  return (static_cast<unsigned long long>(tag) << 32) | count;
}

/// CTA b's push claim word (region push_claims, a line of its own), as an atomic. Addressed
/// from the kernel parameters each time: a pointer kept in registers spilled.
__device__ inline cuda::atomic_ref<unsigned long long, cuda::thread_scope_device> push_claim(
    const comm::session_view& v, int b) {
  return cuda::atomic_ref<unsigned long long, cuda::thread_scope_device>(*reinterpret_cast<unsigned long long*>(
      v.local + v.layout.push_claims.offset + static_cast<std::size_t>(b) * comm::launch_word_stride));
}

/// Lane 0: claims the next token of CTA c's chunk; returns the tokens claimed before it.
__device__ inline unsigned int claim_token(const comm::session_view& v, int c) {
  return static_cast<unsigned int>(push_claim(v, c).fetch_add(1, cuda::memory_order_acquire));
}

/// Tokens in CTA c's chunk of a launch with T tokens cut into chunks of `chunk`.
__device__ inline int chunk_tokens(int c, int T, int chunk) {
  const int first = min(T, c * chunk);
  return min(T, first + chunk) - first;
}

/// Whole warp: another CTA whose claim word carries this launch's tag and tokens not yet
/// claimed (each lane reads one word per round of 32 CTAs, from CTA b + 1 on), or -1.
__device__ inline int cta_with_tokens_left(const comm::session_view& v, unsigned int tag, int T, int chunk, int lane) {
  const int G = gridDim.x, b = blockIdx.x;
  for (int first = 1; first < G; first += 32) {
    const int c = (b + first + lane) % G;
    bool left = false;
    if (first + lane < G) {
      const unsigned long long w = push_claim(v, c).load(cuda::memory_order_relaxed);
      left = static_cast<unsigned int>(w >> 32) == tag &&
             static_cast<int>(static_cast<unsigned int>(w)) < chunk_tokens(c, T, chunk);
    }
    const unsigned int found = __ballot_sync(~0u, left);
    if (found) return __shfl_sync(~0u, c, __ffs(found) - 1);
  }
  return -1;
}

/// Whole warp: the next token this warp pushes, or -1 when every offered chunk is claimed.
/// `cta`: the CTA whose chunk the warp claims from (its own first; -1 once none has tokens
/// left). `ticket`, in lane 0: that chunk's tokens claimed before the warp's last claim,
/// issued one token ahead so that its latency hides behind a push. Claims go only to words
/// that carry this launch's tag, which no other launch changes while this one runs, so the
/// count alone is kept. (Launches that overlap, a misuse, can break that; the fault is fatal
/// and the step's outputs void, as for every overlap.) A claim that comes back past its
/// chunk's end (others took the rest) moves on to another chunk. The acquire of a claim (lane
/// 0) and __syncwarp make the chunk's slots visible to the whole warp.
__device__ inline int next_claimed_token(const comm::session_view& v, int& cta, unsigned int& ticket, unsigned int tag,
                                         int T, int chunk, int lane) {
  while (cta >= 0) {
    const int k = static_cast<int>(__shfl_sync(~0u, ticket, 0));
    if (k < chunk_tokens(cta, T, chunk)) {
      __syncwarp();
      if (lane == 0) ticket = claim_token(v, cta);
      return min(T, cta * chunk) + k;
    }
    cta = cta_with_tokens_left(v, tag, T, chunk, lane);
    if (cta >= 0 && lane == 0) ticket = claim_token(v, cta);
  }
  return -1;
}

}  // namespace epgraph::kernels::device
