#pragma once
// Claimed tokens in the dispatch push (dispatch.cu, step 4). A CTA with a large chunk offers it
// through a claim word; its warps claim whole tokens one at a time, and warps whose chunk is
// done claim from other CTAs' chunks. SMs do not get equal shares of the NVLink stores, so
// equal fixed chunks waited for the slowest SM (probe tests/probes/link_rates.cu,
// docs/perf-notes.md v26).
//
// Contract:
//  * Every dispatch CTA writes its word in every launch, tagged with the launch's look-back
//    tag (tagged_count): (tag, 0) with release once its slots are written when it offers its
//    chunk, else (tag, kNoClaims). A word is then never older than the previous dispatch, so a
//    32-bit tag that wrapped around never matches a stale word.
//  * Only words that carry this launch's tag are claimed from. The first claim a warp makes on
//    another CTA's word is an acquire (lane 0; __syncwarp passes it on to the warp): it makes
//    that chunk's slots (token_slots) visible. Every other claim is relaxed: later claims on the
//    same word come after that acquire, and the CTA's own slots were published by
//    __syncthreads. An acquire makes the warp wait for the atomic's round trip, which the push
//    of the token before it was meant to hide.
//  * Every token of an offered chunk is returned by exactly one claim; a claim past the
//    chunk's end moves the warp on. Nothing spins.
//  * Counts are compared unsigned, and a warp's first claim on a chunk checks the word's tag:
//    a word that an overlapping launch (a misuse, a fatal fault) rewrote then reads as "no
//    tokens left" (a count from kNoClaims up, or another tag), never as a token outside the
//    chunk.
#include <cuda/atomic>

#include <cstdint>

#include "epgraph/comm/session_view.hpp"
#include "epgraph/comm/workspace_layout.hpp"
#include "device/common.cuh"

namespace epgraph::kernels::device {

/// The count of a claim word whose chunk is not offered: no chunk is this long.
constexpr unsigned int kNoClaims = 0x7fffffffu;

/// The push claim words (region push_claims: CTA b's word at the start of line b).
__device__ inline unsigned long long* claim_words(const comm::session_view& v) {
  return reinterpret_cast<unsigned long long*>(v.local + v.layout.push_claims.offset);
}

/// CTA b's push claim word, as an atomic.
__device__ inline cuda::atomic_ref<unsigned long long, cuda::thread_scope_device> push_claim(unsigned long long* words,
                                                                                             int b) {
  return cuda::atomic_ref<unsigned long long, cuda::thread_scope_device>(
      words[static_cast<std::size_t>(b) * (comm::launch_word_stride / sizeof(unsigned long long))]);
}

/// Thread 0 of CTA b: offers its chunk, once its slots are written and published by
/// __syncthreads (the release covers them; contract).
__device__ inline void offer_chunk(unsigned long long* words, int b, unsigned int tag) {
  push_claim(words, b).store(tagged_count(tag, 0), cuda::memory_order_release);
}

/// Thread 0 of CTA b: this launch takes nothing from its chunk (contract: every CTA writes its
/// word every launch).
__device__ inline void offer_nothing(unsigned long long* words, int b, unsigned int tag) {
  push_claim(words, b).store(tagged_count(tag, kNoClaims), cuda::memory_order_relaxed);
}

/// Lane 0: claims the next token of CTA c's chunk; returns the tokens claimed before it. Relaxed
/// (contract): its result is used a token later.
__device__ inline unsigned int claim_token(unsigned long long* words, int c) {
  return static_cast<unsigned int>(push_claim(words, c).fetch_add(1, cuda::memory_order_relaxed));
}

/// Lane 0: a warp's first claim on CTA c's chunk, an acquire; the tokens claimed before it, or
/// kNoClaims when the word does not carry this launch's tag (contract).
__device__ inline unsigned int first_claim_token(unsigned long long* words, int c, unsigned int tag) {
  const unsigned long long w = push_claim(words, c).fetch_add(1, cuda::memory_order_acquire);
  return static_cast<unsigned int>(w >> 32) == tag ? static_cast<unsigned int>(w) : kNoClaims;
}

/// Tokens in CTA c's chunk of a launch with T tokens cut into chunks of `chunk`.
__device__ inline int chunk_tokens(int c, int T, int chunk) {
  const int first = min(T, c * chunk);
  return min(T, first + chunk) - first;
}

/// Whole warp: another CTA whose claim word carries this launch's tag and tokens not yet
/// claimed (each lane reads one word per round of 32 CTAs, from CTA b + 1 on), or -1.
__device__ inline int cta_with_tokens_left(unsigned long long* words, unsigned int tag, int T, int chunk, int lane) {
  const int G = gridDim.x, b = blockIdx.x;
  for (int first = 1; first < G; first += 32) {
    const int c = (b + first + lane) % G;
    bool left = false;
    if (first + lane < G) {
      const unsigned long long w = push_claim(words, c).load(cuda::memory_order_relaxed);
      left = static_cast<unsigned int>(w >> 32) == tag &&
             static_cast<unsigned int>(w) < static_cast<unsigned int>(chunk_tokens(c, T, chunk));
    }
    const unsigned int found = __ballot_sync(~0u, left);
    if (found) return __shfl_sync(~0u, c, __ffs(found) - 1);
  }
  return -1;
}

/// What a claiming warp needs of its launch: T, the chunk length and the launch's tag. Kept in
/// shared memory by the CTA that offers its chunk and read at each claim: held in registers
/// across the push, they slowed the fixed push beside it (perf-notes v27).
struct claim_launch {
  int tokens;
  int chunk;
  unsigned int tag;
};

/// A warp's place in the claims: the CTA whose chunk it claims from (its own first; -1 once
/// none has tokens left) and, in lane 0, that chunk's tokens claimed before the warp's last
/// claim (issued one token ahead, so that its latency hides behind a push).
struct claim_cursor {
  int cta;
  unsigned int ticket;
};

/// The next token a warp pushes (-1: every offered chunk is claimed) and its cursor after it.
struct claimed_token {
  int token;
  claim_cursor at;
};

/// Whole warp: the token after cursor `at`. Claims go only to words that carry this launch's
/// tag, which no other launch changes while this one runs, so the count alone is kept.
/// (Launches that overlap, a misuse, can break that; the fault is fatal and the step's outputs
/// void, as for every overlap.) A claim that comes back past its chunk's end (others took the
/// rest) moves on to another chunk. The first claim on that chunk is an acquire (lane 0), and
/// __syncwarp makes the chunk's slots visible to the whole warp. Not inlined, and everything
/// passed by value: inlined, it cost the fixed push beside it (the push is at the edge of the
/// register budget) 0.3 to 0.5 us at T = 128 (perf-notes v27).
inline __device__ __noinline__ claimed_token next_claimed_token(unsigned long long* words, claim_cursor at,
                                                                unsigned int tag, int T, int chunk, int lane) {
  while (at.cta >= 0) {
    const unsigned int k = __shfl_sync(~0u, at.ticket, 0);
    if (k < static_cast<unsigned int>(chunk_tokens(at.cta, T, chunk))) {
      __syncwarp();
      if (lane == 0) at.ticket = claim_token(words, at.cta);
      return {min(T, at.cta * chunk) + static_cast<int>(k), at};
    }
    at.cta = cta_with_tokens_left(words, tag, T, chunk, lane);
    if (at.cta >= 0 && lane == 0) at.ticket = first_claim_token(words, at.cta, tag);
  }
  return {-1, at};
}

}  // namespace epgraph::kernels::device
