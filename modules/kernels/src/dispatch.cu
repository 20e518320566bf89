// Dispatch: deterministic slots by a per-CTA count + look-back, NVLink stores into the
// receive buffers of the peers in this rank's domain (rows for other domains into staging in
// the remote state, sent by NCCL after the kernel), large chunks pushed as claimed tokens
// (device/push_claims.cuh), counts published by the last CTA, one LSA barrier per CTA.
#include <nccl.h>
#include <nccl_device.h>

#include <cuda/atomic>

#include "device/collective.cuh"
#include "device/common.cuh"
#include "device/fp8_rows.cuh"
#include "device/push_claims.cuh"
#include "device/push_items.hpp"
#include "launch.hpp"
#include "programmatic_launch.cuh"

namespace epgraph::kernels {
namespace {

constexpr int kMaxWarps = 32;
constexpr int kUnroll = device::kPushUnroll;  // independent loads in flight per lane
constexpr int kSharedSlots = 1024;            // slots a CTA keeps in shared memory (tokens x ep)
// Tokens per warp from which a CTA offers its chunk to claims (step 4). Claiming costs about
// 2 us per launch (the offer's release and barrier, the first claim, the last search): at 1 to
// 4 tokens per warp it lost up to 2.8 us (T = 512 and 1024); from 8 on it won up to 15% at
// T = 4096 on 16 to 32 CTAs (v26), and at EP4 on 16 CTAs FP8 too (v28). At EP2 on 16 CTAs it
// still loses: BF16 at T = 2048 3 to 5%, FP8 rows 5 to 8% (v27, v28). There the CTAs finish
// together anyway, and each claimed token costs its warp 0.3 to 0.45 us between tokens, not
// the claim's round trip (a trace, v28): the call to next_claimed_token and its __syncwarp
// (v32). Inlining the common case without the __syncwarp (scripts/diag/claims-fast-path.patch)
// took back only a third of it, 1.4 to 2% on FP8 rows, and was not taken (v33).
constexpr int kClaimTokensPerWarp = 8;
// Up to 32 tokens a warp, warps 0..15 of every CTA route all of them (step 1, tiny): warp
// ballots instead of the look-back. 4 warps (T <= 128) and 8 (T <= 256) gained less at EP2:
// 16 took 0.4 to 0.9 us off T = 129 to 384 and 0.1 to 0.2 us off T = 512 (perf-notes v37).
constexpr int kTinyWarps = 16;
// The static arrays of a dispatch CTA (slots, warp bases, per-destination counters) and the
// largest cached placement table stay within the 48 KB a launch gets without opting in (the
// kernel's other shared state is a few hundred bytes).
static_assert(sizeof(int) * (kSharedSlots + (kMaxWarps + 3) * comm::max_ep_size + max_cached_table_words) + 1024 <=
                  48 * 1024,
              "dispatch's shared memory");

/// Where row `slot` of region `dst` (a peer of this rank's domain: an NVLink store into its
/// window) or of the staging region `stage` (another domain: sent by NCCL after the kernel)
/// lies for destination d.
template <bool Domains>
__device__ __forceinline__ char* row_destination(const comm::session_view& v, const comm::region& dst,
                                                 const comm::region& stage, int d, int slot, std::size_t row_bytes) {
  if (!Domains || v.in_domain(d))
    return static_cast<char*>(ncclGetLsaPointer(v.window, v.row_offset(dst, v.rank, slot, row_bytes), v.lsa_peer(d)));
  return reinterpret_cast<char*>(v.remote_state + v.remote_row_offset(stage, d, slot, row_bytes));
}

/// Calls f(d) for every destination d in `mask`, from rank+1 upwards, then wrapping: each
/// source starts on another peer (as the LSA baseline does) instead of every rank storing to
/// rank 0 first. Measured: T=128 dispatch on 4 GPUs 31.9 -> 25.6 us.
template <class F>
__device__ __forceinline__ void for_each_destination(std::uint64_t mask, int rank, F&& f) {
  const std::uint64_t above = rank + 1 < 64 ? mask & (~std::uint64_t{0} << (rank + 1)) : 0;
  for (std::uint64_t m = above, rest = mask & ~above; m || rest; m &= m - 1) {
    if (!m) m = rest, rest = 0;
    f(__ffsll(static_cast<long long>(m)) - 1);
  }
}

/// Pushes slice `slice` of `slices` of token t's row to every destination in `slots.mask`.
/// The row is read once and stored to each destination. Warp-uniform loop bounds.
// Domains: the session has several NVLink domains (remote ranks exist). A one-domain session runs
// the instantiation without the per-destination domain test (issue 13: the one-domain path keeps
// its speed).
// Placed: the session has a placement table; the top-k id row (copy 0, copied as int32 then)
// leaves as the physical ids token t chose, so the receiver knows the replica.
template <bool Domains, bool Placed, class V>
__device__ void push_row(const copy_spec& c, const comm::session_view& v, int t, int slice, int slices,
                         const device::warp_slots& slots, int lane, bool ids, device::table_cache cache, bool cached) {
  std::size_t v0, v1;
  device::push_items::slice_range(c.row_bytes / sizeof(V), slice, slices, v0, v1);
  const V* src = reinterpret_cast<const V*>(c.src + static_cast<std::size_t>(t) * c.row_bytes);

  for (std::size_t base = v0; base < v1; base += 32 * kUnroll) {
    V x[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const std::size_t i = base + u * 32 + lane;
      if (i < v1) x[u] = src[i];
    }
    if constexpr (Placed && sizeof(V) == sizeof(std::int32_t)) {
      if (ids) {
        const comm::placement_ref table = v.placement();
#pragma unroll
        for (int u = 0; u < kUnroll; ++u)
          if (base + u * 32 + lane < v1)
            x[u] = static_cast<V>(cached ? cache.physical(static_cast<int>(x[u]), t)
                                        : device::physical_expert(table, static_cast<int>(x[u]), t));
      }
    }
    for_each_destination(slots.mask, v.rank, [&](int d) {
      V* dst = reinterpret_cast<V*>(row_destination<Domains>(v, c.dst, c.stage, d, slots.slot(d), c.row_bytes));
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        const std::size_t i = base + u * 32 + lane;
        if (i < v1) dst[i] = x[u];
      }
    });
  }
}

/// The quantizing copy (copy_spec::quantize): slice `slice` of `slices` of token t's bf16 row,
/// in warp steps of 32 x N elements (N = c.vec_bytes codes per lane: 16 when the codes rows are
/// 16-byte aligned, else 8), is read once, quantized once, and its codes and block scales are
/// stored to every destination. Warp-uniform loop bounds.
/// A round (kSteps steps) yields 8 block scales. HoldScales: a lane holds one, so the scales of
/// four rounds leave together as one 32-lane store per destination instead of four 8-lane
/// stores (small NVLink writes): EP4 T=4096 269.4 -> 264.7 us (perf-notes v21). The kernel with
/// a placement table keeps the store per round: holding spilled registers there.
template <bool Domains, int N, bool HoldScales>
__device__ void push_quantized_row(const copy_spec& c, const comm::session_view& v, int t, int slice, int slices,
                                   const device::warp_slots& slots, int lane) {
  constexpr int kBlocksPerStep = 32 * N / fp8::block, kLanesPerBlock = fp8::block / N;
  constexpr int kSteps = kUnroll * 8 / N;  // steps per round: kUnroll 16-byte loads in flight per lane
  constexpr int kRoundBlocks = kBlocksPerStep * kSteps, kRoundsHeld = HoldScales ? 32 / kRoundBlocks : 1;
  static_assert(32 % kRoundBlocks == 0, "a warp holds whole rounds of scales");
  const int hidden = static_cast<int>(c.row_bytes);  // one code byte per element
  const int steps = (hidden + 32 * N - 1) / (32 * N), blocks = fp8::blocks_of(hidden);
  std::size_t s0, s1;
  device::push_items::slice_range(static_cast<std::size_t>(steps), slice, slices, s0, s1);
  const int first = static_cast<int>(s0), end = static_cast<int>(s1);
  const uint4* src = reinterpret_cast<const uint4*>(c.src + static_cast<std::size_t>(t) * c.row_bytes * 2);
  std::uint32_t held = 0;  // lane l: the scale of block l of the held rounds

  for (int base = first; base < end; base += kSteps) {
    uint4 x[kSteps][N / 8];
#pragma unroll
    for (int u = 0; u < kSteps; ++u) {
      if (base + u < end) {
        device::load_lane<N>(src, base + u, lane, hidden, x[u]);
      } else {
#pragma unroll
        for (int w = 0; w < N / 8; ++w) x[u][w] = make_uint4(0, 0, 0, 0);
      }
    }
    device::fp8_lane<N> q[kSteps];
#pragma unroll
    for (int u = 0; u < kSteps; ++u) q[u] = device::quantize_lane<N>(x[u], c.scales);
    // Where the round's scales go (warp-uniform bounds). Without holding: block b (of step
    // u = b / kBlocksPerStep, computed by lane (b % kBlocksPerStep) * kLanesPerBlock) into lane
    // b, stored this round. Holding: this is round r of the held ones, and block b goes to lane
    // r * kRoundBlocks + b; the held scales leave after the last held round or the slice's
    // last round.
    bool flush = true, stores = false;  // stores: this lane holds a block scale of the row
    int held_first = kBlocksPerStep * base;  // lane l holds block held_first + l
    if constexpr (HoldScales) {
      const int r = (base - first) / kSteps % kRoundsHeld, local = lane - r * kRoundBlocks;
#pragma unroll
      for (int u = 0; u < kSteps; ++u) {
        const std::uint32_t s = __shfl_sync(~0u, q[u].scale, (lane % kBlocksPerStep) * kLanesPerBlock);
        if (local >= 0 && local < kRoundBlocks && local / kBlocksPerStep == u) held = s;
      }
      flush = r == kRoundsHeld - 1 || base + kSteps >= end;
      held_first -= r * kRoundBlocks;
      stores = lane < r * kRoundBlocks + min(kRoundBlocks, min(blocks - kBlocksPerStep * base, (end - base) * kBlocksPerStep));
    } else {
      held = 0;
#pragma unroll
      for (int u = 0; u < kSteps; ++u) {
        const std::uint32_t s = __shfl_sync(~0u, q[u].scale, (lane % kBlocksPerStep) * kLanesPerBlock);
        if (lane / kBlocksPerStep == u) held = s;
      }
      stores = lane < kRoundBlocks && held_first + lane < blocks && base + lane / kBlocksPerStep < end;
    }

    for_each_destination(slots.mask, v.rank, [&](int d) {
      const int slot = slots.slot(d);
      char* codes = row_destination<Domains>(v, c.dst, c.stage, d, slot, c.row_bytes);
#pragma unroll
      for (int u = 0; u < kSteps; ++u)
        if (base + u < end) device::store_codes<N>(codes, base + u, lane, hidden, q[u]);
      if (flush && stores) {
        char* scales = row_destination<Domains>(v, c.scales_dst, c.scales_stage, d, slot, c.scales_row_bytes);
        if (c.scales == fp8::scale_format::ue8m0)
          reinterpret_cast<std::uint8_t*>(scales)[held_first + lane] = static_cast<std::uint8_t>(held);
        else
          reinterpret_cast<std::uint32_t*>(scales)[held_first + lane] = held;
      }
    });
  }
}

__device__ inline cuda::atomic_ref<unsigned long long, cuda::thread_scope_device> lookback_entry(
    const comm::session_view& v, int i) {
  return cuda::atomic_ref<unsigned long long, cuda::thread_scope_device>(
      v.local_at<unsigned long long>(v.layout.lookback)[i]);
}
/// Spins until look-back entry i carries this launch's tag; returns its count. An entry with a
/// later tag was written by an overlapping launch; an entry that stays earlier past the
/// deadline belongs to a CTA that is not resident. Both record a fatal fault, set `failed` and
/// count 0, so the wait always ends.
__device__ inline int wait_for_tag(const comm::session_view& v, int i, std::uint64_t seq, device::deadline& clock,
                                   int& failed) {
  const unsigned int tag = static_cast<unsigned int>(seq);
  for (;;) {
    const unsigned long long x = lookback_entry(v, i).load(cuda::memory_order_relaxed);
    const unsigned int seen = static_cast<unsigned int>(x >> 32);
    if (seen == tag) return static_cast<int>(static_cast<unsigned int>(x));
    const bool newer = static_cast<int>(seen - tag) > 0;
    if (newer || clock.passed()) {
      device::record_fatal(v, newer ? comm::fault_code::overlapping_launch : comm::fault_code::lookback_timeout,
                           comm::collective_kind::dispatch, seq);
      failed = 1;
      return 0;
    }
  }
}

/// Everything of a dispatch CTA but returning its claim on CTA b: the barrier session lives
/// in here, so it has written its epoch back when dispatch_kernel returns the claim.
template <bool Domains, bool Placed>
__device__ __forceinline__ void dispatch_cta(const ncclDevComm& dev, const dispatch_params& p, device::collective_state& st) {
  const comm::session_view& v = p.v;
  const int ep = v.ep_size, G = gridDim.x, b = blockIdx.x;
  const int tid = threadIdx.x, nthreads = blockDim.x, lane = tid & 31, warp = tid >> 5, nwarps = nthreads >> 5;
  comm::fault_record* input = &device::faults_of(v)->input;

  __shared__ int s_failed;                      // a look-back wait failed: push nothing, stop the peers
  __shared__ int s_count[comm::max_ep_size];    // my chunk's tokens per destination
  __shared__ int s_prefix[comm::max_ep_size];   // tokens per destination in CTAs 0..b-1
  __shared__ int s_running[comm::max_ep_size];  // next free slot per destination
  __shared__ int s_warp_base[kMaxWarps][comm::max_ep_size];

  // Issued first, so their latencies overlap the claim: T, the barrier session's epoch, the
  // announcer's window lookup.
  const int requested_tokens = *p.num_tokens;
  device::barrier_session bar(ncclCoopCta(), dev, ncclTeamLsa(dev), dev.lsaBarrier, static_cast<uint32_t>(b));
  const device::announcer me = device::announcer_of(v);
  for (int d = tid; d < ep; d += nthreads) s_count[d] = s_prefix[d] = 0;
  if (tid == 0) s_failed = 0;
  // A placement table small enough is copied into shared memory now, beside the claim; the
  // claim's __syncthreads() publishes it.
  extern __shared__ int2 s_table[];
  device::table_cache cache{s_table, s_table + v.num_experts, v.num_experts};
  const bool cached = Placed && p.table_cache_bytes > 0;
  if (cached) cache.fill(v.placement());
  // The claim, and T with this thread's token mask when the chunk is one round. Without a
  // placement table the mask comes first, so that the id loads overlap the claim's atomic
  // (taken by the last thread, which holds no token at small T); nothing is reported before
  // the claim, as a refused launch reports nothing. With a table the claim comes first: its
  // __syncthreads publishes the cache, and T computed before it spilled registers.
  if constexpr (Placed) device::begin_collective(v, comm::collective_kind::dispatch, st);
  const int T = device::clamp_token_count(requested_tokens, v.max_tokens, input, false);
  const int chunk = (T + G - 1) / G;
  const int begin = min(T, b * chunk), end = min(T, begin + chunk);
  const bool one_round = chunk <= nthreads;  // at T <= grid * threads, i.e. nearly always
  const int t = begin + tid;                 // this thread's token in a one-round chunk
  // Tiny (at most 32 x kTinyWarps tokens, and the chunk's slots fit in shared memory): warp w
  // of every CTA routes tokens 32w .. 32w + 31, lane i token 32w + i, so its ballots give
  // each token's rank among the warp's tokens and the warp's totals (step 1, tiny). Decided
  // from values every CTA shares (T, the chunk), so that all CTAs take the same path. Not
  // with a placement table: that kernel spilled registers with it.
  const int routing_warps = max(1, (T + 31) / 32);
  const bool tiny = !Placed && routing_warps <= min(kTinyWarps, nwarps) && chunk * ep <= kSharedSlots;
  const int routed = tiny ? (warp < routing_warps ? warp * 32 + lane : T) : t;  // the token of this thread's mask
  const int routed_end = tiny ? T : end;
  const bool mine = routed >= begin && routed < end;  // routed lies in this CTA's chunk
  // My chunk's slots, also kept in shared memory for the push when they fit (the push then
  // reads no global slots back); token_slots always gets them, combine reads it.
  __shared__ int s_slots[kSharedSlots];
  const auto mask_of = [&](int token, bool report, bool& invalid) {
    const auto of = [&](auto rank_of) {
      return device::destination_mask(p.topk_ids, token, v.top_k, v.num_experts, rank_of, input, report, invalid);
    };
    if constexpr (Placed) {
      if (cached) return of([&](int e) { return cache.chosen(e, token).x; });
      return of([&](int e) {
        const comm::placement_ref table = v.placement();
        return table.rank_of[device::physical_expert(table, e, token)];
      });
    } else {
      // A multiply and a shift, not a division (0 <= e < num_experts here): the hardware's
      // integer division put ~0.07 us per top-k entry on the path to the first push, 0.3 to
      // 0.7 us per dispatch at EP2 (perf-notes v32).
      return of([&](int e) { return v.per_rank.divide(e); });
    }
  };
  bool invalid = false;  // this thread's token has an id out of range
  std::uint64_t m = 0;
  if (!Placed && one_round && routed < routed_end) m = mask_of(routed, false, invalid);
  if (tiny && warp < routing_warps) {
    // 1 (tiny). Before the claim, so that its __syncthreads publishes the warps' totals and
    // ranks (shared memory only: a refused launch writes nothing global).
    for (int d = 0; d < ep; ++d) {
      const unsigned int ballot = __ballot_sync(~0u, (m >> d) & 1);
      if (lane == 0) s_warp_base[warp][d] = __popc(ballot);
      if (mine) s_slots[(routed - begin) * ep + d] = (m >> d) & 1 ? __popc(ballot & ((1u << lane) - 1)) : -1;
    }
  }
  if constexpr (!Placed) device::begin_collective(v, comm::collective_kind::dispatch, st);
  if (!st.refused) {  // the faults found before the claim (tiny: by the CTA whose chunk holds the token)
    if (b == 0 && tid == 0) device::clamp_token_count(requested_tokens, v.max_tokens, input, true);
    if (invalid && mine) device::report_invalid_ids(p.topk_ids, routed, v.top_k, v.num_experts, input);
  }
  // Combine uses this count, after a dispatch refused for a fatal fault too (it marks every
  // row of the step NaN); a launch that overlaps another leaves the other's count and word
  // alone. The word goes to the other domains with the rows and comes back with their combine
  // rows: combine compares both with it (a refused dispatch sends a stopped word).
  if (b == 0 && tid == 0 && !st.overlapped) {
    *v.local_at<std::int32_t>(v.layout.dispatched) = T;
    // A max, as the failing CTAs' below: whichever lands last, a stopped word stays.
    atomicMax(reinterpret_cast<unsigned long long*>(v.local_at<std::uint64_t>(v.layout.dispatch_word)),
              static_cast<unsigned long long>(comm::progress_word(
                  st.seq, st.refused ? comm::collective_kind::stopped : comm::collective_kind::dispatch)));
  }
  // Several domains: the words the exchanges bring from the other domains start at 0, "not
  // arrived": a word that never comes is then a fault in combine, and the exchange guard names
  // the ranks it still waits for (docs/domains.md, failure modes). NCCL writes them after this
  // kernel (stream order).
  if (Domains && b == 0 && !st.overlapped) {
    auto* words = v.remote_at<std::uint64_t>(v.layout.remote_words);
    for (int i = tid; i < 2 * (ep - v.domain_size); i += nthreads) words[i] = 0;
  }
  // The look-back tag: this launch's number, the same in every CTA of the launch and never 0
  // (the value of unwritten entries) in the first 2^32 launches of a session.
  const unsigned int tag = static_cast<unsigned int>(st.seq);
  if (st.refused) {
    // Nothing moves; the CTAs that still run need this CTA's look-back entries to end.
    for (int d = tid; d < ep; d += nthreads) lookback_entry(v, b * ep + d).store(device::tagged_count(tag, 0), cuda::memory_order_relaxed);
    if (tid == 0) device::offer_nothing(device::claim_words(v), b, tag);
    device::stop_collective(v, st.seq);
    return;
  }
  const bool shared_slots = (end - begin) * ep <= kSharedSlots;
  std::int32_t* token_slots = v.local_at<std::int32_t>(v.layout.token_slots);
  // Slot of `token` (this thread's, destinations `mask`) at every destination: prefix (none:
  // 0) + base of its warp + rank in the warp. Every thread of the CTA (the ballots).
  const auto write_slots = [&](int token, std::uint64_t mask, const int* prefix) {
    for (int d = 0; d < ep; ++d) {
      const unsigned int ballot = __ballot_sync(~0u, (mask >> d) & 1);
      if (token >= end) continue;
      const int base = (prefix ? prefix[d] : 0) + s_warp_base[warp][d];
      const int slot = (mask >> d) & 1 ? base + __popc(ballot & ((1u << lane) - 1)) : -1;
      token_slots[static_cast<std::size_t>(token) * ep + d] = slot;
      if (shared_slots) s_slots[(token - begin) * ep + d] = slot;
    }
  };
  // Every thread: its warp's count of tokens per destination (`mask`: this thread's token's
  // destinations) into s_warp_base[warp]. The caller syncs before scan_warps reads it.
  const auto count_warps = [&](std::uint64_t mask) {
    for (int d = 0; d < ep; ++d) {
      const unsigned int ballot = __ballot_sync(~0u, (mask >> d) & 1);
      if (lane == 0) s_warp_base[warp][d] = __popc(ballot);
    }
  };
  // One thread per destination d: turns the warps' counts into bases starting at `run`;
  // returns the total past them.
  const auto scan_warps = [&](int d, int run) {
    for (int w = 0; w < nwarps; ++w) {
      const int c = s_warp_base[w][d];
      s_warp_base[w][d] = run;
      run += c;
    }
    return run;
  };
  device::deadline clock(v.deadline_ns);
  int usable_end = end;
  if (tiny) {
    // 1 (tiny), after the claim. A token's slot at d: its rank in its warp's ballot plus the
    // tokens of the warps before it; the totals: every routing warp's. No look-back wait and
    // one or two __syncthreads (the claim's, and one below) where the one-round path has
    // four: at T <= 128 that path put 0.5 to 1.1 us more before the first store (perf-notes
    // v36, v37).
    const bool several = routing_warps > 1;  // else the ranks are the slots already
    if (mine)
      for (int d = 0; d < ep; ++d) {
        int slot = s_slots[(routed - begin) * ep + d];
        if (several && slot >= 0)
          for (int w = 0; w < warp; ++w) slot += s_warp_base[w][d];
        if (several) s_slots[(routed - begin) * ep + d] = slot;
        token_slots[static_cast<std::size_t>(routed) * ep + d] = slot;
      }
    for (int d = tid; d < ep; d += nthreads) {
      int total = 0;
      for (int w = 0; w < routing_warps; ++w) total += s_warp_base[w][d];
      s_running[d] = total;  // for step 5; this thread reads it there
    }
    // Nothing waits for this CTA's look-back entries in a tiny launch, but they get this
    // launch's tag all the same: tags are 32 bits of the launch number, so after 2^31 tiny
    // launches a stale entry would read as a later launch's (a false overlap). From the last
    // threads (ep <= 64 <= threads), which route nothing unless every warp routes.
    if (tid >= nthreads - ep)
      lookback_entry(v, b * ep + (nthreads - 1 - tid)).store(device::tagged_count(tag, 0), cuda::memory_order_relaxed);
    // The pushing warps read the finished slots of other warps' tokens; a claimed chunk's
    // offer (step 4) must follow its token_slots, which other CTAs read. With one routing
    // warp and no claims neither applies, and this __syncthreads cost 0.3 us at T = 1.
    if (several || end - begin >= kClaimTokensPerWarp * nwarps) __syncthreads();  // `claimed` (step 4): usable_end == end
  } else if (one_round) {
    // A thread owns at most one token (its mask m is known), and the count pass is the slot
    // pass. Warp ballots count; a thread per destination scans the warps and publishes the
    // chunk's count at once; after the look-back each thread has its slots. Three
    // __syncthreads instead of six.
    if (Placed && t < end) {
      bool bad = false;
      m = mask_of(t, true, bad);
    }
    count_warps(m);
    __syncthreads();
    for (int d = tid; d < ep; d += nthreads)
      lookback_entry(v, b * ep + d).store(device::tagged_count(tag, scan_warps(d, 0)), cuda::memory_order_relaxed);
    // Only a CTA with tokens needs its predecessors' sum (all CTAs are co-resident and publish
    // before they wait, so the wait ends); at small T most CTAs skip it entirely.
    if (begin < end)
      for (int i = tid; i < b * ep; i += nthreads) atomicAdd(&s_prefix[i % ep], wait_for_tag(v, i, st.seq, clock, s_failed));
    __syncthreads();
    usable_end = s_failed ? begin : end;  // a failed look-back leaves the prefix unknown
    if (!s_failed) write_slots(t, m, s_prefix);
    __syncthreads();
  } else {
    // 1. Count my chunk per destination. The first round's masks stay in registers for the
    //    slot pass, which then reads those ids once.
    std::uint64_t first_mask = 0;
    for (int token = t; token < end; token += nthreads) {
      bool bad = false;
      const std::uint64_t mask = mask_of(token, true, bad);
      if (token == t) first_mask = mask;
      for (std::uint64_t r = mask; r; r &= r - 1) atomicAdd(&s_count[__ffsll(static_cast<long long>(r)) - 1], 1);
    }
    __syncthreads();

    // 2. Publish my aggregate; wait for my predecessors' (see above).
    for (int d = tid; d < ep; d += nthreads) lookback_entry(v, b * ep + d).store(device::tagged_count(tag, s_count[d]), cuda::memory_order_relaxed);
    if (begin < end)
      for (int i = tid; i < b * ep; i += nthreads) atomicAdd(&s_prefix[i % ep], wait_for_tag(v, i, st.seq, clock, s_failed));
    __syncthreads();
    for (int d = tid; d < ep; d += nthreads) s_running[d] = s_prefix[d];
    usable_end = s_failed ? begin : end;
    __syncthreads();

    // 3. Slots in token order, a round of nthreads tokens at a time.
    for (int base = begin; base < usable_end; base += nthreads) {
      const int token = base + tid;
      bool bad = false;
      const std::uint64_t mask = token >= end ? 0 : base == begin ? first_mask : mask_of(token, false, bad);
      count_warps(mask);
      __syncthreads();
      for (int d = tid; d < ep; d += nthreads) s_running[d] = scan_warps(d, s_running[d]);
      __syncthreads();
      write_slots(token, mask, nullptr);  // the warp bases include the prefix
      __syncthreads();
    }
  }

  // 4. Push rows. Claimed (at least kClaimTokensPerWarp tokens per warp): a warp takes the next
  //    token of this CTA's chunk from the CTA's claim word, and once the chunk is exhausted, of
  //    another CTA's chunk. SMs do not store over NVLink at equal rates, so equal fixed chunks
  //    leave the fast SMs idle while the slow ones finish (probe tests/probes/link_rates.cu,
  //    perf-notes v26). Otherwise fixed items (push_items).
  const device::push_items items(p, usable_end - begin, nwarps);
  const bool claimed = usable_end - begin >= kClaimTokensPerWarp * nwarps;  // whole tokens too; step 1 (tiny) syncs on it
  // Claimed: the warp's claim cursor (its CTA: -1 when not claimed). Else the warp's next
  // item, in the cursor's ticket. One loop, one push: two loops, or two call sites of the
  // push, spilled registers.
  device::claim_cursor at{-1, static_cast<unsigned int>(warp)};
  __shared__ device::claim_launch s_launch;  // claimed: written with the offer
  if (claimed) {
    // Offered once the chunk's slots are written (the __syncthreads above): a warp that reads
    // this launch's tag in the word reads those slots. This CTA's warps claim only after the
    // offer. (Giving warp w token w unclaimed, to save the first claim's round trip, spilled
    // registers.)
    if (tid == 0) {
      s_launch = {T, chunk, tag};
      device::offer_chunk(device::claim_words(v), b, tag);
    }
    __syncthreads();
    at = {b, lane == 0 ? device::claim_token(device::claim_words(v), b) : 0u};
  } else if (tid == 0) {
    device::offer_nothing(device::claim_words(v), b, tag);
  }
  for (;;) {
    device::push_items::item it;
    if (claimed) {
      const device::claimed_token next =
          device::next_claimed_token(device::claim_words(v), at, s_launch.tag, s_launch.tokens, s_launch.chunk, lane);
      if (next.token < 0) break;
      at = next.at;
      it = {next.token, 0, p.num_copies, 0, 1};
    } else {
      if (static_cast<int>(at.ticket) >= items.count()) break;
      it = items.at(p, begin, static_cast<int>(at.ticket));
      at.ticket += nwarps;
    }
    const bool own = at.cta == -1 || at.cta == b;  // else the slots are in token_slots only
    const device::warp_slots slots = own && shared_slots ? device::warp_slots::load(s_slots, it.token - begin, ep, lane)
                                                         : device::warp_slots::load(token_slots, it.token, ep, lane);
    for (int c = it.copy; c < it.copy_end; ++c) {
      if (p.copies[c].quantize) {
        // 16 codes per lane (16-byte stores, fewer shuffles) but for whole tokens on 2 ranks:
        // there 8 was faster. Measured on H200, H=7168 (perf-notes v18): EP2 T=128 15.4 ->
        // 13.6 us and T=512 25.1 -> 22.2 us with 16, but T=4096 (whole tokens) 109.5 us with 8
        // against 114.1; EP4 T=4096 277.5 with 8 against 269.5 with 16. (Deciding per token by
        // its destination count spilled registers.)
        if (p.copies[c].vec_bytes == 16 && (!items.whole_tokens || v.ep_size > 2))
          push_quantized_row<Domains, 16, !Placed>(p.copies[c], v, it.token, it.slice, it.slices, slots, lane);
        else
          push_quantized_row<Domains, 8, !Placed>(p.copies[c], v, it.token, it.slice, it.slices, slots, lane);
        continue;
      }
      device::with_vector_type(p.copies[c].vec_bytes, [&](auto vec) {
        push_row<Domains, Placed, decltype(vec)>(p.copies[c], v, it.token, it.slice, it.slices, slots, lane, c == 0,
                                                 cache, cached);
      });
    }
  }

  // 5. The last CTA publishes this rank's totals into every destination, after its own
  //    copies (by then every CTA has long published its count) and before its barrier
  //    arrives, so the release covers the counts. The G*ep loads are spread over the CTA:
  //    summed serially they cost ~G L2 round trips (measured: +6 us at T=1).
  if (b == G - 1) {
    if (!tiny) {  // tiny: step 1 left the totals in s_running
      for (int d = tid; d < ep; d += nthreads) s_running[d] = 0;  // reused as the totals
      __syncthreads();
      for (int i = tid; i < G * ep; i += nthreads) atomicAdd(&s_running[i % ep], wait_for_tag(v, i, st.seq, clock, s_failed));
      __syncthreads();
    }
    if (!s_failed)
      for (int d = tid; d < ep; d += nthreads)
        *(!Domains || v.in_domain(d) ? static_cast<std::int32_t*>(ncclGetLsaPointer(
                               v.window, v.layout.counts.offset + sizeof(std::int32_t) * v.rank, v.lsa_peer(d)))
                         : v.remote_at<std::int32_t>(v.layout.staged_counts) + v.remote_index(d)) = s_running[d];
  }

  // 6. Exit barrier: CTA b of every rank has finished its stores (release/acquire). s_failed
  //    was last written before one of the __syncthreads() above.
  const bool in_step = device::sync_collective(bar, v, comm::collective_kind::dispatch, !s_failed, st, me);
  // A CTA that failed (its look-back, or a domain peer out of step, stopped or missing) marks
  // this dispatch's word stopped, so the rows the exchange sends to other domains say so and
  // their combine faults instead of summing them. A max: the stopped bit is the top bit, and a
  // word never goes back. NCCL reads the word after the kernel (stream order).
  if (Domains && !in_step && threadIdx.x == 0 && !st.overlapped)
    atomicMax(reinterpret_cast<unsigned long long*>(v.local_at<std::uint64_t>(v.layout.dispatch_word)),
              static_cast<unsigned long long>(comm::progress_word(st.seq, comm::collective_kind::stopped)));
}

template <bool Domains, bool Placed>
__global__ void __launch_bounds__(kMaxThreads, 1) dispatch_kernel(const __grid_constant__ ncclDevComm dev,
                                                        const __grid_constant__ dispatch_params p) {
  __shared__ device::collective_state st;
  device::wait_for_previous_kernel();
  dispatch_cta<Domains, Placed>(dev, p, st);
  device::let_next_kernel_launch(p.v.programmatic_launch);  // past the exit barrier: no peer wait left
  device::end_collective(p.v);
}

}  // namespace

cudaError_t detail::launch_dispatch(const ncclDevComm& dev, const dispatch_params& p, cudaStream_t stream) noexcept {
  const dim3 grid(p.v.num_ctas), block(p.v.threads_per_cta);
  const bool domains = p.v.domain_size < p.v.ep_size;
  const auto shared = p.v.placed ? static_cast<std::size_t>(p.table_cache_bytes) : 0;
  void (*kernel)(const ncclDevComm, const dispatch_params) =
      p.v.placed ? (domains ? dispatch_kernel<true, true> : dispatch_kernel<false, true>)
                 : (domains ? dispatch_kernel<true, false> : dispatch_kernel<false, false>);
  return launch_kernel(kernel, grid, block, shared, stream, p.v.programmatic_launch, dev, p);
}

cudaError_t detail::dispatch_attributes(cudaFuncAttributes* attributes) noexcept {
  // The instantiations share the limits that matter (block size; one CTA per SM): the
  // tightest counts.
  cudaError_t st = cudaFuncGetAttributes(attributes, dispatch_kernel<false, false>);
  for (const void* other : {reinterpret_cast<const void*>(dispatch_kernel<true, false>),
                            reinterpret_cast<const void*>(dispatch_kernel<false, true>),
                            reinterpret_cast<const void*>(dispatch_kernel<true, true>)}) {
    cudaFuncAttributes a{};
    if (st == cudaSuccess) st = cudaFuncGetAttributes(&a, other);
    if (st == cudaSuccess && a.maxThreadsPerBlock < attributes->maxThreadsPerBlock)
      attributes->maxThreadsPerBlock = a.maxThreadsPerBlock;
  }
  return st;
}

}  // namespace epgraph::kernels
