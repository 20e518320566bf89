// Combine: LSA barrier at entry, then each token pulls its partial rows from the ranks it
// was dispatched to (NVLink loads in this rank's domain, local reads of the rows other domains
// sent before the kernel) and sums them in fp32 in ascending rank order (deterministic).
#include <nccl.h>
#include <nccl_device.h>

#include <algorithm>
#include <type_traits>

#include "device/collective.cuh"
#include "device/combine_items.hpp"
#include "device/common.cuh"
#include "device/fp8_rows.cuh"
#include "launch.hpp"
#include "programmatic_launch.cuh"

namespace epgraph::kernels {
namespace {

// The combine region's rows as FP8 codes and scales (combine_precision::fp8), as a kernel's
// input type.
struct fp8_rows {};

// 16-byte loads each lane keeps in flight, by the most sources a token can have: min(ep, k)
// rounded up to 2, 4 or 8. Measured on 4x H200 (docs/perf-notes.md, v6), T=4096: with 2
// sources 8 loads beat 4 and 16 (EP2 combine 185.5 / 182.6 / 180.9 us for 4 / 16 / 8); with 4
// sources 8 beat 16 (EP4 492 vs 500 us). 8 sources keep 16 (2 groups), as before. 64
// registers of loads at most: 512 threads per SM must fit without spills. The kernel is
// specialised per source bound: two specialisations in one kernel spill.
// Deep: 16 loads for <= 4 sources as well, on small grids with whole rows
// (device/combine_items.hpp says which).
template <int Sources, bool Deep>
constexpr int kLoadsInFlight = (Sources <= 4 && !Deep) ? 8 : 16;

// Row `slot` of this rank's block in peer d's combine region: the partial sums that peer
// computed for a token this rank dispatched to it. A peer in another domain sent that block
// by NCCL before the kernel, into remote_partials.
// Domains: the session has several NVLink domains; a one-domain session runs the
// instantiation without the domain test (issue 13: the one-domain path keeps its speed).
template <class In, bool Domains>
__device__ inline const In* peer_combine_row(const comm::session_view& v, int d, int slot) {
  if (Domains && !v.in_domain(d))
    return reinterpret_cast<const In*>(v.remote_state + v.remote_row_offset(v.layout.remote_partials, d, slot,
                                                                     v.layout.combine_row_bytes));
  return static_cast<const In*>(ncclGetLsaPointer(
      v.window, v.row_offset(v.layout.combine, v.rank, slot, v.layout.combine_row_bytes), v.lsa_peer(d)));
}

// A faulted combine writes NaN into the rows it owns: an output that cannot pass for a result.
template <class Out, int N>
__device__ void fill_nan(Out* out_row, int g0, int g1, int lane) {
  float nan[N];
#pragma unroll
  for (int i = 0; i < N; ++i) nan[i] = __int_as_float(0x7fc00000);
  for (int g = g0 + lane; g < g1; g += 32) device::element_group<Out, N>::store(out_row + static_cast<std::size_t>(g) * N, nan);
}

// Latency-bound pull: every remote 16-byte load of a round (Groups groups from up to Sources
// ranks) is issued before the first is summed; ascending rank order is kept.
template <class In, class Out, int N, int Sources, bool Domains, bool Deep>
__device__ void pull_fast(const comm::session_view& v, const device::warp_slots& slots, int g0, int g1, int lane,
                          Out* out_row) {
  using group = device::element_group<In, N>;
  constexpr int kGroups = std::max(1, kLoadsInFlight<Sources, Deep> / (Sources * group::words));
  const In* rows[Sources];
  std::uint64_t m = slots.mask;
#pragma unroll
  for (int j = 0; j < Sources; ++j) {  // warp-uniform; static indices keep rows[] in registers
    const int d = m ? __ffsll(static_cast<long long>(m)) - 1 : 0;
    const int slot = slots.slot(d);
    rows[j] = m ? peer_combine_row<In, Domains>(v, d, slot) : nullptr;
    m &= m - 1;
  }
  for (int base = g0; base < g1; base += 32 * kGroups) {
    typename group::raw raw[kGroups][Sources];
#pragma unroll
    for (int u = 0; u < kGroups; ++u) {
      const int g = base + u * 32 + lane;
#pragma unroll
      for (int j = 0; j < Sources; ++j)
        if (rows[j] && g < g1) raw[u][j] = group::load(rows[j] + static_cast<std::size_t>(g) * N);
    }
#pragma unroll
    for (int u = 0; u < kGroups; ++u) {
      const int g = base + u * 32 + lane;
      if (g >= g1) continue;
      float acc[N] = {};
#pragma unroll
      for (int j = 0; j < Sources; ++j)
        if (rows[j]) group::accumulate(raw[u][j], acc);
      device::element_group<Out, N>::store(out_row + static_cast<std::size_t>(g) * N, acc);
    }
  }
}

// The FP8 combine (combine_precision::fp8): rows are [hidden codes][blocks fp32 scales]; a lane
// step is 16 codes (one 16-byte load) and its block's scale, per source. Sources are taken in
// ascending rank order, up to Sources at a time with all their loads of a round issued first;
// each adds code x scale in fp32 (device::add_dequantized), the sum is rounded once.
template <class Out, int Sources, bool Domains>
__device__ void pull_fp8(const comm::session_view& v, const device::warp_slots& slots, int g0, int g1, int lane,
                         Out* out_row) {
  constexpr int kGroups = Sources <= 2 ? 2 : 1;  // 16 accumulators per group: more spills
  for (int base = g0; base < g1; base += 32 * kGroups) {
    float acc[kGroups][16] = {};
    for (std::uint64_t m = slots.mask; m;) {  // warp-uniform: the next Sources sources, ascending
      const char* rows[Sources];
#pragma unroll
      for (int j = 0; j < Sources; ++j) {
        const int d = m ? __ffsll(static_cast<long long>(m)) - 1 : 0;
        const int slot = slots.slot(d);
        rows[j] = m ? peer_combine_row<char, Domains>(v, d, slot) : nullptr;
        m &= m - 1;
      }
      uint4 codes[kGroups][Sources];
      float scales[kGroups][Sources];
#pragma unroll
      for (int u = 0; u < kGroups; ++u) {
        const int g = base + u * 32 + lane;
#pragma unroll
        for (int j = 0; j < Sources; ++j)
          if (rows[j] && g < g1) {
            codes[u][j] = reinterpret_cast<const uint4*>(rows[j])[g];
            scales[u][j] = reinterpret_cast<const float*>(rows[j] + v.hidden)[g * 16 / fp8::block];
          }
      }
#pragma unroll
      for (int u = 0; u < kGroups; ++u)
#pragma unroll
        for (int j = 0; j < Sources; ++j)
          if (rows[j] && base + u * 32 + lane < g1) device::add_dequantized(codes[u][j], scales[u][j], acc[u]);
    }
#pragma unroll
    for (int u = 0; u < kGroups; ++u) {
      const int g = base + u * 32 + lane;
      if (g < g1) device::element_group<Out, 16>::store(out_row + static_cast<std::size_t>(g) * 16, acc[u]);
    }
  }
}

// Every (token, slice) item of this warp: pulls the token's partial rows (or NaN when the
// barrier failed).
template <class In, class Out, int N, int Sources, bool Domains, bool Deep>
__device__ __forceinline__ void pull_items(const comm::session_view& v, Out* out, int T, int slices, int per_slice,
                                           int groups, bool in_step, int global_warp, int total_warps, int lane) {
  for (int item = global_warp; item < T * slices; item += total_warps) {
    const int t = item / slices, slice = item % slices;
    const int g0 = slice * per_slice, g1 = min(groups, g0 + per_slice);
    Out* out_row = out + static_cast<std::size_t>(t) * v.hidden;
    if (!in_step) {
      fill_nan<Out, N>(out_row, g0, g1, lane);
      continue;
    }
    const device::warp_slots slots =
        device::warp_slots::load(v.local_at<std::int32_t>(v.layout.token_slots), t, v.ep_size, lane);
    if constexpr (std::is_same_v<In, fp8_rows>) {
      pull_fp8<Out, Sources, Domains>(v, slots, g0, g1, lane, out_row);
      continue;
    } else if constexpr (N > 1) {
      if (__popcll(slots.mask) <= Sources) {
        pull_fast<In, Out, N, Sources, Domains, Deep>(v, slots, g0, g1, lane, out_row);
        continue;
      }
    }
    if constexpr (!std::is_same_v<In, fp8_rows>) {
      for (int base = g0; base < g1; base += 32) {
        const int g = base + lane;
        const bool active = g < g1;
        float acc[N] = {};
        for (std::uint64_t m = slots.mask; m; m &= m - 1) {
          const int d = __ffsll(static_cast<long long>(m)) - 1;
          const In* row = peer_combine_row<In, Domains>(v, d, slots.slot(d));
          if (active) device::element_group<In, N>::add(row + static_cast<std::size_t>(g) * N, acc);
        }
        if (active) device::element_group<Out, N>::store(out_row + g * N, acc);
      }
    }
  }
}

template <class In, class Out, int N, int Sources, bool Domains, bool Deep = false>
__global__ void __launch_bounds__(kMaxThreads, 1) combine_kernel(const __grid_constant__ ncclDevComm dev,
                                                       const __grid_constant__ combine_params p) {
  const comm::session_view& v = p.v;
  device::wait_for_previous_kernel();
  // The count the last dispatch used (and clamped): the slots below are its slots. Written by
  // an earlier kernel of this stream, so it is read before the barrier, off the critical path.
  const int recorded = *v.local_at<std::int32_t>(v.layout.dispatched);
  // Only several domains compare words: one domain skips the load (perf-notes v10, small T).
  const std::uint64_t dispatched_word = Domains ? *v.local_at<std::uint64_t>(v.layout.dispatch_word) : 0;
  // Several domains: the combine exchange (before this kernel, stream order) has completed;
  // its mark goes back to 0 for the exchange guard, and the count of combines moves on, so
  // that the guard tells the next combine of the same dispatch from this one.
  if (Domains && blockIdx.x == 0 && threadIdx.x == 0) {
    *v.remote_at<std::uint64_t>(v.layout.combine_mark) = 0;
    *v.remote_at<std::uint64_t>(v.layout.combines_done) += 1;
  }
  __shared__ device::collective_state st;
  bool in_step = false;
  {
    // Closed (the epoch written back) before the pull; the claim is returned at the end.
    device::barrier_session bar(ncclCoopCta(), dev, ncclTeamLsa(dev), dev.lsaBarrier, blockIdx.x);
    const device::announcer me = device::announcer_of(v);
    // Entry barrier: CTA b of every peer arrived, i.e. every peer's expert stage (and
    // prepare-combine) finished before its combine passed its first wait (stream order, or
    // griddepcontrol.wait under programmatic launch). The claim runs beside the arrive.
    device::arrive_and_claim(bar, v, comm::collective_kind::combine, st);
    if (st.refused) {
      device::stop_collective(v, st.seq);
    } else {
      in_step = device::announce_and_wait(bar, v, comm::collective_kind::combine, true, st, me);
      // Other domains: their rows and combine rows must belong to this rank's last dispatch.
      if (Domains && in_step) in_step = device::remote_in_step(v, dispatched_word, st);
    }
  }
  device::let_next_kernel_launch(v.programmatic_launch);  // past the barrier: no peer wait left
  const int lane = threadIdx.x & 31;
  const int warps_per_cta = blockDim.x >> 5;
  const int total_warps = gridDim.x * warps_per_cta;
  const int global_warp = blockIdx.x * warps_per_cta + (threadIdx.x >> 5);
  const int T = min(max(recorded, 0), v.max_tokens);

  const int groups = v.hidden / N;  // N-element groups per row
  const int max_slices = max(1, (groups + 31) / 32);
  const int slices = T > 0 ? min(max_slices, max(1, total_warps / T)) : 1;
  const int per_slice = (groups + slices - 1) / slices;
  Out* out = static_cast<Out*>(p.output);

  // The deep pull only where rows are whole (slices == 1: T is more than half the grid's warps,
  // or rows of at most 32 groups); sliced rows are short, and the deep pull cost them 1.3 to
  // 1.7 us at T = 128 (perf-notes v22). Two whole loops, not a branch per row: one loop with
  // both pulls spills.
  if (Deep && slices == 1)
    pull_items<In, Out, N, Sources, Domains, true>(v, out, T, slices, per_slice, groups, in_step, global_warp,
                                                   total_warps, lane);
  else
    pull_items<In, Out, N, Sources, Domains, false>(v, out, T, slices, per_slice, groups, in_step, global_warp,
                                                    total_warps, lane);
  device::end_collective(v);
}

using combine_fn = void (*)(const ncclDevComm, const combine_params);

template <class In, class Out, bool Domains>
combine_fn pick_for_domains(const combine_params& p) {
  const int max_sources = std::min(p.v.ep_size, p.v.top_k);  // a token has at most this many
  if constexpr (std::is_same_v<In, fp8_rows>) {  // always 16 per lane step; sources in rounds of 2, 4 or 8
    if (max_sources <= 2) return combine_kernel<In, Out, 16, 2, Domains>;
    if (max_sources <= 4) return combine_kernel<In, Out, 16, 4, Domains>;
    return combine_kernel<In, Out, 16, 8, Domains>;
  } else {
    if (!p.vectorized) return combine_kernel<In, Out, 1, 1, Domains>;  // no register path
    const bool deep = device::grid_pulls_deep(p.v.num_ctas, p.v.threads_per_cta);
    if (max_sources <= 2) return deep ? combine_kernel<In, Out, 8, 2, Domains, true> : combine_kernel<In, Out, 8, 2, Domains>;
    if (max_sources <= 4) return deep ? combine_kernel<In, Out, 8, 4, Domains, true> : combine_kernel<In, Out, 8, 4, Domains>;
    return combine_kernel<In, Out, 8, 8, Domains>;  // more than 8: general loop
  }
}

template <class In, class Out>
combine_fn pick_for_output(const combine_params& p) {
  return p.v.domain_size < p.v.ep_size ? pick_for_domains<In, Out, true>(p) : pick_for_domains<In, Out, false>(p);
}

template <class In>
combine_fn pick_for_input(const combine_params& p) {
  switch (p.output_type) {
    case comm::element_type::bf16: return pick_for_output<In, __nv_bfloat16>(p);
    case comm::element_type::fp16: return pick_for_output<In, __half>(p);
    case comm::element_type::fp32: return pick_for_output<In, float>(p);
  }
  return nullptr;
}

// The specialisation a launch with these parameters runs (nullptr for an invalid type).
combine_fn pick(const combine_params& p) {
  if (p.precision == combine_precision::fp8) return pick_for_input<fp8_rows>(p);
  // bf16 rows in an fp32 session's combine region (first half of each row): the bf16 kernels,
  // with the row stride of the session's layout.
  if (p.precision == combine_precision::bf16) return pick_for_input<__nv_bfloat16>(p);
  switch (p.v.combine_type) {
    case comm::element_type::bf16: return pick_for_input<__nv_bfloat16>(p);
    case comm::element_type::fp16: return pick_for_input<__half>(p);
    case comm::element_type::fp32: return pick_for_input<float>(p);
  }
  return nullptr;
}

}  // namespace

cudaError_t detail::launch_combine(const ncclDevComm& dev, const combine_params& p, cudaStream_t stream) noexcept {
  const combine_fn kernel = pick(p);
  if (!kernel) return cudaErrorInvalidValue;
  return launch_kernel(kernel, p.v.num_ctas, p.v.threads_per_cta, 0, stream, p.v.programmatic_launch, dev, p);
}

cudaError_t detail::combine_attributes(const combine_params& p, cudaFuncAttributes* attributes) noexcept {
  const combine_fn kernel = pick(p);
  if (!kernel) return cudaErrorInvalidValue;
  return cudaFuncGetAttributes(attributes, kernel);
}

}  // namespace epgraph::kernels
