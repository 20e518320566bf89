// Expert-major permute and weighted un-permute (local kernels, issue 14).
//
// Permute, four steps, deterministic: a slot's rows come in (source, receive slot) order.
//   count  one warp per chunk of 32 receive slots (a lane each): rows per local expert slot
//   scan   CUB exclusive sum over [slot][chunk]: where each chunk's rows of each slot start
//          (two launches). Small layouts skip it: place sums the counts itself.
//   place  one warp per chunk again: each row's place (its rank among the chunk's rows in the
//          slot, from a bit mask per slot) into entry_rows; counts and offsets
//   copy   one warp per segment of a received token's payload rows: read once, written to
//          each of the token's places; the first segment's warp also writes origins and weights
//          (without copy_rows a warp per token writes only those and the rows' receive indices)
// Un-permute: a warp per span of segments of a received token's combine row sums the token's
// rows (ascending top-k entry, fp32, one rounding) into the combine region.
#include <cub/device/device_scan.cuh>

#include "device/common.cuh"
#include "device/unpermute_items.hpp"
#include "expert_major_params.hpp"
#include "programmatic_launch.cuh"

namespace epgraph::kernels::detail {
namespace {

constexpr int kChunkWarps = chunk_warps;
constexpr int kCopyThreads = 256;
constexpr int kCopyUnroll = copy_unroll;
constexpr int kSumGroups = device::unpermute_sum_groups;  // un-permute: element groups per lane and item
constexpr int kSumRows = 4;  // un-permute: expert rows loaded before they are added

__device__ inline int received_count(const comm::session_view& v, int src) {
  const int n = v.window_at<const std::int32_t>(v.layout.counts)[src];
  return min(max(n, 0), v.max_tokens);
}

struct chunk {
  int src, first_slot, rows;
};
__device__ inline chunk chunk_at(const comm::session_view& v, int c) {
  const int per_source = (v.max_tokens + comm::expert_major_chunk_rows - 1) / comm::expert_major_chunk_rows;
  chunk ch;
  ch.src = c / per_source;
  ch.first_slot = (c % per_source) * comm::expert_major_chunk_rows;
  ch.rows = min(max(received_count(v, ch.src) - ch.first_slot, 0), comm::expert_major_chunk_rows);
  return ch;
}

constexpr int kInlineScanChunks = inline_scan_chunks;

// Slot x's count in each chunk (inline_scan layouts: expert_major_params.hpp), all loads in
// flight at once.
__device__ inline void slot_counts(const std::int32_t* counts, int x, int slots, int chunks, int (&n)[kInlineScanChunks]) {
#pragma unroll
  for (int k = 0; k < kInlineScanChunks; ++k)
    n[k] = x < slots && k < chunks ? counts[static_cast<std::size_t>(x) * chunks + k] : 0;
}

// The warp's share of the dynamic shared memory: the chunk's top-k ids; per slot, the bit mask
// of the chunk's rows that have a row there; for place, each slot's next and first row.
struct chunk_scratch {
  std::int32_t* ids;
  unsigned* rows_of;
  int* start;
  int* slot_first;
};
__device__ inline chunk_scratch scratch_of(const expert_major_params& p, int warp) {
  extern __shared__ int shared[];
  const int ids = comm::expert_major_chunk_rows * p.v.top_k, slots = p.layout.local_slots;
  int* mine = shared + warp * (ids + 3 * slots);
  return {mine, reinterpret_cast<unsigned*>(mine + ids), mine + ids + slots, mine + ids + 2 * slots};
}

// store(x, load(x)) for x in [0, n), strided over the warp's lanes, kBatch loads in flight per
// lane: these small gathers are latency-bound, one round trip each batch instead of each load.
constexpr int kBatch = 8;
template <class Load, class Store>
__device__ inline void gather(int n, int lane, Load load, Store store) {
  for (int x0 = lane; x0 < n; x0 += 32 * kBatch) {
    int value[kBatch];
#pragma unroll
    for (int u = 0; u < kBatch; ++u)
      if (x0 + u * 32 < n) value[u] = load(x0 + u * 32);
#pragma unroll
    for (int u = 0; u < kBatch; ++u)
      if (x0 + u * 32 < n) store(x0 + u * 32, value[u]);
  }
}

__device__ inline void load_chunk_ids(const expert_major_params& p, const chunk& ch, std::int32_t* ids, int lane) {
  const comm::session_view& v = p.v;
  const std::int32_t* recv = v.window_at<const std::int32_t>(v.layout.topk_ids) +
                             (static_cast<std::size_t>(ch.src) * v.max_tokens + ch.first_slot) * v.top_k;
  gather(ch.rows * v.top_k, lane, [&](int x) { return recv[x]; }, [&](int x, int id) { ids[x] = id; });
  __syncwarp();
}

// Lane i < ch.rows (row i of the chunk) marks, for each entry j in order, its local slot's bit
// in rows_of; an entry whose bit was already set repeats an expert of its row (no row; bit j
// of the result). A row's rank among the chunk's rows in slot s is then
// popc(rows_of[s] & lanes below): no walk over the rows one at a time.
__device__ inline unsigned mark_rows(const expert_major_params& p, const chunk& ch, const chunk_scratch& s, int lane) {
  const comm::session_view& v = p.v;
  for (int x = lane; x < p.layout.local_slots; x += 32) s.rows_of[x] = 0;
  __syncwarp();
  unsigned repeats = 0;
  if (lane < ch.rows)
    for (int j = 0; j < v.top_k; ++j)
      if (const int l = v.local_slot_of(s.ids[lane * v.top_k + j]); l >= 0)
        if (atomicOr(&s.rows_of[l], 1u << lane) & (1u << lane)) repeats |= 1u << j;
  __syncwarp();
  return repeats;
}

__global__ void count_kernel(const __grid_constant__ expert_major_params p) {
  device::after_previous_kernel(p.v.programmatic_launch);
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int c = blockIdx.x * kChunkWarps + warp;
  if (c >= p.layout.chunks) return;
  const chunk_scratch s = scratch_of(p, warp);
  const chunk ch = chunk_at(p.v, c);
  load_chunk_ids(p, ch, s.ids, lane);
  (void)mark_rows(p, ch, s, lane);
  auto* counts = p.at<std::int32_t>(p.layout.chunk_counts);
  for (int x = lane; x < p.layout.local_slots; x += 32)
    counts[static_cast<std::size_t>(x) * p.layout.chunks + c] = __popc(s.rows_of[x]);
}

// Whole warp, inline_scan layouts: chunk c's start in every slot (s.start) and every slot's first
// row (s.slot_first), the exclusive prefix over [slot][chunk] of chunk_counts, as CUB's scan
// would have written it into chunk_starts.
__device__ inline void inline_starts(const expert_major_params& p, int c, const chunk_scratch& s, int lane) {
  const int chunks = p.layout.chunks, slots = p.layout.local_slots;
  const auto* counts = p.at<const std::int32_t>(p.layout.chunk_counts);
  int carry = 0;  // the rows of the slots of earlier rounds
  for (int x0 = 0; x0 < slots; x0 += 32) {
    const int x = x0 + lane;
    int n[kInlineScanChunks];
    slot_counts(counts, x, slots, chunks, n);
    int total = 0, before = 0;
#pragma unroll
    for (int k = 0; k < kInlineScanChunks; ++k) {
      before += k < c ? n[k] : 0;
      total += n[k];
    }
    int inclusive = total;  // over this round's slots
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
      const int y = __shfl_up_sync(~0u, inclusive, o);
      if (lane >= o) inclusive += y;
    }
    const int first = carry + inclusive - total;
    if (x < slots) {
      s.start[x] = first + before;
      s.slot_first[x] = first;
    }
    carry += __shfl_sync(~0u, inclusive, 31);
  }
  __syncwarp();
}

// Per slot (block 0, after its chunks): rows, offsets, and the rows a masked slot could not hold.
// inline_scan layouts: each slot's first row from warp 0's scratch (chunk 0's inline_starts; the
// caller syncs the block first), its total the distance to the next slot's first row, so the
// counts are read again for the last slot only. (Its total in static shared memory instead
// would push a layout at the planner's 48 KB of dynamic shared memory over the launch limit.)
__device__ void write_slot_totals(const expert_major_params& p) {
  const int chunks = p.layout.chunks, slots = p.layout.local_slots;
  const auto* starts = p.at<const std::int32_t>(p.layout.chunk_starts);
  const auto* counts = p.at<const std::int32_t>(p.layout.chunk_counts);
  auto* slot_rows = p.at<std::int32_t>(p.layout.counts);
  auto* demand = p.at<std::int32_t>(p.layout.demand);
  auto* offsets = p.at<std::int64_t>(p.layout.offsets);
  const bool masked = p.layout.form == comm::expert_major_form::masked;
  const auto capacity = static_cast<long long>(p.layout.capacity);
  for (int x = threadIdx.x; x < slots; x += blockDim.x) {
    const std::size_t last = static_cast<std::size_t>(x) * chunks + chunks - 1;
    long long first, total = 0;
    if (inline_scan(p.layout)) {
      const int* slot_first = scratch_of(p, 0).slot_first;
      first = slot_first[x];
      if (x + 1 < slots) {
        total = slot_first[x + 1] - first;
      } else {
        int n[kInlineScanChunks];
        slot_counts(counts, x, slots, chunks, n);
#pragma unroll
        for (int k = 0; k < kInlineScanChunks; ++k) total += n[k];
      }
    } else {
      first = starts[static_cast<std::size_t>(x) * chunks];
      total = starts[last] + counts[last] - first;
    }
    slot_rows[x] = static_cast<std::int32_t>(masked ? min(total, capacity) : total);
    demand[x] = static_cast<std::int32_t>(total);
    offsets[x] = masked ? x * capacity : first;
    if (x == slots - 1) offsets[slots] = masked ? slots * capacity : first + total;
    if (masked && total > capacity) {  // counted always; the fault record keeps the first fault only
      atomicAdd(p.at<unsigned long long>(p.layout.dropped), static_cast<unsigned long long>(total - capacity));
      auto* faults = p.v.local_at<comm::device_faults>(p.v.layout.faults);
      device::record_input_fault(&faults->input, comm::fault_code::expert_rows_over_capacity, -1, x,
                                 static_cast<int>(total - capacity));
    }
  }
}

// One warp: the rows of chunk c, each to its place (entry_rows): a slot's rows in row order.
__device__ void place_chunk(const expert_major_params& p, int c, int warp, int lane) {
  const comm::session_view& v = p.v;
  const int chunks = p.layout.chunks, slots = p.layout.local_slots;
  const auto* starts = p.at<const std::int32_t>(p.layout.chunk_starts);
  const bool masked = p.layout.form == comm::expert_major_form::masked;
  const auto capacity = static_cast<long long>(p.layout.capacity);
  const chunk_scratch s = scratch_of(p, warp);
  if (inline_scan(p.layout)) {
    inline_starts(p, c, s, lane);
  } else {
    gather(slots, lane, [&](int x) { return starts[static_cast<std::size_t>(x) * chunks + c]; },
           [&](int x, int start) { s.start[x] = start; });
    if (masked)
      gather(slots, lane, [&](int x) { return starts[static_cast<std::size_t>(x) * chunks]; },
             [&](int x, int start) { s.slot_first[x] = start; });
  }
  const chunk ch = chunk_at(v, c);
  load_chunk_ids(p, ch, s.ids, lane);
  const unsigned repeats = mark_rows(p, ch, s, lane);
  if (lane >= ch.rows) return;
  const int slot = ch.first_slot + lane;
  std::int32_t* entry_rows = p.at<std::int32_t>(p.layout.entry_rows) +
                             (static_cast<std::size_t>(ch.src) * v.max_tokens + slot) * v.top_k;
  const unsigned below = (1u << lane) - 1u;
  for (int j = 0; j < v.top_k; ++j) {
    long long row = -1;
    if (const int l = v.local_slot_of(s.ids[lane * v.top_k + j]); l >= 0 && !((repeats >> j) & 1u)) {
      const int packed = s.start[l] + __popc(s.rows_of[l] & below);
      if (!masked) {
        row = packed;
      } else if (const int within = packed - s.slot_first[l]; within < capacity) {
        row = l * capacity + within;
      }
    }
    entry_rows[j] = static_cast<std::int32_t>(row);
  }
  if (repeats) {  // the first repeated entry of this row
    const int j = __ffs(static_cast<int>(repeats)) - 1;
    comm::fault_record f;
    f.code = comm::fault_code::expert_repeated;
    f.token = slot;
    f.entry = j;
    f.value = s.ids[lane * v.top_k + j];
    f.peer = ch.src;
    comm::device::record_fault(&v.local_at<comm::device_faults>(v.layout.faults)->input, f);
  }
}

__global__ void place_kernel(const __grid_constant__ expert_major_params p) {
  device::after_previous_kernel(p.v.programmatic_launch);
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int c = blockIdx.x * kChunkWarps + warp;
  if (c < p.layout.chunks) place_chunk(p, c, warp, lane);
  if (blockIdx.x == 0) {
    if (inline_scan(p.layout)) __syncthreads();  // warp 0's slot_first (write_slot_totals)
    write_slot_totals(p);
  }
}

// Copy and un-permute work in items of row segments (a warp per item), so that a few tokens
// still spread over many warps, and each lane keeps several loads in flight.

// Each source's received count, staged in shared memory once per CTA, so an item tests its
// slot without a round trip to memory (ep_size <= max_ep_size, checked by the config).
__device__ inline void stage_received(const comm::session_view& v, int* received) {
  for (int s = threadIdx.x; s < v.ep_size; s += blockDim.x) received[s] = received_count(v, s);
  __syncthreads();
}

// Lane j < k: the row of received token r's entry j (or -1); the valid rows in ascending entry
// order into places (and their weights into scale, when given). Returns how many.
__device__ inline int token_places(const expert_major_params& p, int r, int lane, int* places, float* scale) {
  const std::size_t entry = static_cast<std::size_t>(r) * p.v.top_k + lane;
  const int row = lane < p.v.top_k ? p.at<const std::int32_t>(p.layout.entry_rows)[entry] : -1;
  const unsigned valid = __ballot_sync(~0u, row >= 0);
  if (row >= 0) {
    const int at = __popc(valid & ((1u << lane) - 1u));
    places[at] = row;
    if (scale) scale[at] = p.recv_weights[entry];
  }
  __syncwarp();
  return __popc(valid);
}

// Lane j < k: the origin (source, slot, entry) and weight of the row of received token r's
// entry j, if it has one. Here, where a warp serves one token, rather than in place_kernel,
// whose lanes serve a row each (these stores would scatter).
__device__ inline void write_origins(const expert_major_params& p, int r, int lane) {
  if (lane >= p.v.top_k) return;
  const std::size_t entry = static_cast<std::size_t>(r) * p.v.top_k + lane;
  const int row = p.at<const std::int32_t>(p.layout.entry_rows)[entry];
  if (row < 0) return;
  std::int32_t* origin = p.at<std::int32_t>(p.layout.origins) + 3 * static_cast<std::size_t>(row);
  origin[0] = r / p.v.max_tokens;
  origin[1] = r % p.v.max_tokens;
  origin[2] = lane;
  if (p.layout.weights.bytes) p.at<float>(p.layout.weights)[row] = p.recv_weights[entry];
  if (p.layout.receive_rows.bytes) p.at<std::int32_t>(p.layout.receive_rows)[row] = r;
}

// Segment `segment` of received token r's payload rows, read once and stored to each of the
// token's places (the whole warp; `places`: the warp's scratch).
__device__ inline void copy_segment(const expert_major_params& p, int r, int segment, int lane, int* places) {
  const comm::session_view& v = p.v;
  const int src = r / v.max_tokens, slot = r % v.max_tokens;
  int i = 0;  // the payload this segment belongs to
  while (segment >= p.segments[i]) segment -= p.segments[i++];
  const std::size_t row_bytes = p.row_bytes[i];
  const char* src_row = v.window_local + v.row_offset(v.layout.payloads[i], src, slot, row_bytes);
  char* dst_base = p.buffer + p.layout.payloads[i].offset;
  device::with_vector_type(p.vec_bytes[i], [&](auto tag) {
    using V = decltype(tag);
    // The segment's loads go out before the places are read, so the two latencies overlap.
    const std::size_t nvec = row_bytes / sizeof(V);
    const std::size_t first = static_cast<std::size_t>(segment) * 32 * kCopyUnroll + lane;
    const V* src_vec = reinterpret_cast<const V*>(src_row);
    V x[kCopyUnroll];
#pragma unroll
    for (int u = 0; u < kCopyUnroll; ++u)
      if (first + u * 32 < nvec) x[u] = src_vec[first + u * 32];
    const int n = token_places(p, r, lane, places, nullptr);
    for (int d = 0; d < n; ++d) {
      V* dst = reinterpret_cast<V*>(dst_base + static_cast<std::size_t>(places[d]) * row_bytes);
#pragma unroll
      for (int u = 0; u < kCopyUnroll; ++u)
        if (first + u * 32 < nvec) dst[first + u * 32] = x[u];
    }
  });
}

// A warp per item: a segment of a received token's payload rows (row_segments per token), or
// without copy_rows the token itself (row_segments = 1).
__global__ void __launch_bounds__(kCopyThreads) copy_kernel(const __grid_constant__ expert_major_params p) {
  device::after_previous_kernel(p.v.programmatic_launch);
  const comm::session_view& v = p.v;
  __shared__ int places[kCopyThreads / 32][32];
  __shared__ int received[comm::max_ep_size];
  stage_received(v, received);
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const long long items = static_cast<long long>(v.ep_size) * v.max_tokens * p.row_segments;
  for (long long item = blockIdx.x * (kCopyThreads / 32) + warp; item < items;
       item += gridDim.x * (kCopyThreads / 32)) {
    const int r = static_cast<int>(item / p.row_segments);
    const int src = r / v.max_tokens, slot = r % v.max_tokens;
    if (slot >= received[src]) continue;
    const int segment = static_cast<int>(item % p.row_segments);
    if (p.layout.copy_rows) copy_segment(p, r, segment, lane, places[warp]);
    if (segment == 0) write_origins(p, r, lane);
    __syncwarp();
  }
}

// N elements of T, loaded and stored as one access (16 bytes when N > 1).
template <class T, int N>
struct alignas(N > 1 ? 16 : alignof(T)) element_pack {
  T e[N];
};

// Element e of a pack as fp32; bf16 from its 32-bit pair by a shift or a mask.
template <class T, int N>
__device__ inline float element_float(const element_pack<T, N>& x, int e) {
  if constexpr (std::is_same_v<T, __nv_bfloat16> && N % 2 == 0) {
    unsigned pair;
    memcpy(&pair, &x.e[e & ~1], sizeof pair);
    return __uint_as_float(e % 2 == 0 ? pair << 16 : pair & 0xffff0000u);
  } else {
    return device::to_float(x.e[e]);
  }
}

// The received tokens' total, from every lane's share of `received` (shared memory).
__device__ inline int received_total(const int* received, int ep_size) {
  int total = 0;
  for (int s = threadIdx.x & 31; s < ep_size; s += 32) total += received[s];
  return __reduce_add_sync(~0u, total);
}

// One item: `span` consecutive segments of one received token's combine row, each
// kSumGroups groups of N elements per lane; each element the sum over the token's entries in
// ascending order of the expert rows (times the weight when weighted), fp32, one rounding.
// Loads of kSumRows rows are issued before they are added, in order. Three CTAs per SM (at most
// 85 registers): a change that needs more spills, which the build rejects, instead of silently
// losing a third of the loads in flight (v34).
template <class T, int N, bool weighted>
__global__ void __launch_bounds__(kCopyThreads, 3) unpermute_kernel(const __grid_constant__ expert_major_params p) {
  device::after_previous_kernel(p.v.programmatic_launch);
  using pack = element_pack<T, N>;
  const comm::session_view& v = p.v;
  __shared__ int places[kCopyThreads / 32][32];
  __shared__ float scale[kCopyThreads / 32][32];
  __shared__ int received[comm::max_ep_size];
  stage_received(v, received);
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const T* out = p.at<const T>(p.layout.output);
  T* combine = v.window_at<T>(v.layout.combine);
  const int groups = v.hidden / N, segments = device::unpermute_segments(v.hidden, N);
  const int span = device::unpermute_span(received_total(received, v.ep_size), segments,
                                          static_cast<long long>(gridDim.x) * (kCopyThreads / 32), p.max_span);
  const int spans = (segments + span - 1) / span;
  const long long items = static_cast<long long>(v.ep_size) * v.max_tokens * spans;
  for (long long item = blockIdx.x * (kCopyThreads / 32) + warp; item < items;
       item += gridDim.x * (kCopyThreads / 32)) {
    const int r = static_cast<int>(item / spans);
    const int src = r / v.max_tokens, slot = r % v.max_tokens;
    if (slot >= received[src]) continue;
    const int n = token_places(p, r, lane, places[warp], weighted ? scale[warp] : nullptr);
    const int first = static_cast<int>(item % spans) * span, last = min(first + span, segments);
    for (int segment = first; segment < last; ++segment) {
      int g[kSumGroups];
      float acc[kSumGroups][N];
#pragma unroll
      for (int u = 0; u < kSumGroups; ++u) {
        g[u] = (segment * kSumGroups + u) * 32 + lane;
#pragma unroll
        for (int e = 0; e < N; ++e) acc[u][e] = 0.0f;
      }
      for (int d0 = 0; d0 < n; d0 += kSumRows) {
        pack x[kSumRows][kSumGroups];
#pragma unroll
        for (int d = 0; d < kSumRows; ++d)
#pragma unroll
          for (int u = 0; u < kSumGroups; ++u)
            if (d0 + d < n && g[u] < groups)
              x[d][u] = reinterpret_cast<const pack*>(out + static_cast<std::size_t>(places[warp][d0 + d]) * v.hidden)[g[u]];
#pragma unroll
        for (int d = 0; d < kSumRows; ++d) {
          if (d0 + d >= n) break;
          const float w = weighted ? scale[warp][d0 + d] : 1.0f;
#pragma unroll
          for (int u = 0; u < kSumGroups; ++u)
#pragma unroll
            for (int e = 0; e < N; ++e) {
              const float xe = element_float(x[d][u], e);
              acc[u][e] = __fadd_rn(acc[u][e], weighted ? __fmul_rn(w, xe) : xe);
            }
        }
      }
#pragma unroll
      for (int u = 0; u < kSumGroups; ++u) {
        if (g[u] >= groups) continue;
        pack y;
#pragma unroll
        for (int e = 0; e < N; ++e) y.e[e] = device::from_float<T>(acc[u][e]);
        reinterpret_cast<pack*>(combine + static_cast<std::size_t>(r) * v.hidden)[g[u]] = y;
      }
    }
    __syncwarp();
  }
}

using unpermute_fn = void (*)(expert_major_params);

template <class T>
unpermute_fn unpermute_kernel_for(bool weighted, bool vectorized) {
  constexpr int kVector = 16 / static_cast<int>(sizeof(T));
  if (vectorized) return weighted ? unpermute_kernel<T, kVector, true> : unpermute_kernel<T, kVector, false>;
  return weighted ? unpermute_kernel<T, 1, true> : unpermute_kernel<T, 1, false>;
}

unpermute_fn unpermute_kernel_for(comm::element_type type, bool weighted, bool vectorized) {
  switch (type) {
    case comm::element_type::bf16: return unpermute_kernel_for<__nv_bfloat16>(weighted, vectorized);
    case comm::element_type::fp16: return unpermute_kernel_for<__half>(weighted, vectorized);
    case comm::element_type::fp32: return unpermute_kernel_for<float>(weighted, vectorized);
  }
  return nullptr;
}

// As many CTAs of `kernel` as the device holds at once (a grid-stride loop gains nothing from
// more, and loses loads in flight with fewer), but no more than `items` (a warp each) can keep
// busy: CTAs that only start and stop cost a 128-token copying permute ~1 us at EP2 (v34).
template <class Kernel>
cudaError_t resident_grid(Kernel kernel, int sms, long long items, int* grid) {
  int per_sm = 0;
  if (const cudaError_t st = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, kCopyThreads, 0);
      st != cudaSuccess)
    return st;
  constexpr int kWarps = kCopyThreads / 32;
  const long long resident = static_cast<long long>(max(per_sm, 1)) * sms;
  *grid = static_cast<int>(max(1ll, min(resident, (items + kWarps - 1) / kWarps)));
  return cudaSuccess;
}

}  // namespace

cudaError_t expert_major_scan_bytes(int items, std::size_t* bytes) noexcept {
  return cub::DeviceScan::ExclusiveSum(nullptr, *bytes, static_cast<const std::int32_t*>(nullptr),
                                       static_cast<std::int32_t*>(nullptr), items);
}

cudaError_t launch_permute(const expert_major_params& p, void* scan_scratch, std::size_t scan_bytes, int grid,
                           cudaStream_t stream) noexcept {
  const int chunk_grid = (p.layout.chunks + kChunkWarps - 1) / kChunkWarps;
  const bool pdl = p.v.programmatic_launch;
  if (const cudaError_t st = launch_kernel(count_kernel, chunk_grid, kChunkWarps * 32, p.shared_bytes, stream, pdl, p);
      st != cudaSuccess)
    return st;
  const int items = p.layout.chunks * p.layout.local_slots;
  if (!inline_scan(p.layout))
    if (const cudaError_t st = cub::DeviceScan::ExclusiveSum(scan_scratch, scan_bytes, p.at<const std::int32_t>(p.layout.chunk_counts),
                                                             p.at<std::int32_t>(p.layout.chunk_starts), items, stream);
        st != cudaSuccess)
      return st;
  if (const cudaError_t st = launch_kernel(place_kernel, chunk_grid, kChunkWarps * 32, p.shared_bytes, stream, pdl, p);
      st != cudaSuccess)
    return st;
  return launch_kernel(copy_kernel, grid, kCopyThreads, 0, stream, pdl, p);
}

cudaError_t launch_unpermute(const expert_major_params& p, bool weighted, bool vectorized, int grid,
                             cudaStream_t stream) noexcept {
  const unpermute_fn kernel = unpermute_kernel_for(p.v.combine_type, weighted, vectorized);
  if (kernel == nullptr) return cudaErrorInvalidValue;
  return launch_kernel(kernel, grid, kCopyThreads, 0, stream, p.v.programmatic_launch, p);
}

cudaError_t permute_copy_grid(const expert_major_params& p, int sms, int* grid) noexcept {
  const long long items = static_cast<long long>(p.v.ep_size) * p.v.max_tokens * p.row_segments;
  return resident_grid(copy_kernel, sms, items, grid);
}

cudaError_t unpermute_grid(const expert_major_params& p, bool weighted, bool vectorized, int sms, int* grid) noexcept {
  const unpermute_fn kernel = unpermute_kernel_for(p.v.combine_type, weighted, vectorized);
  if (kernel == nullptr) return cudaErrorInvalidValue;
  // The items of one-segment spans: the most a launch can have (the kernel's spans are longer
  // when the batch is large).
  const int per_group = vectorized ? 16 / static_cast<int>(comm::element_size(p.v.combine_type)) : 1;
  const int segments = device::unpermute_segments(p.v.hidden, per_group);
  return resident_grid(kernel, sms, static_cast<long long>(p.v.ep_size) * p.v.max_tokens * segments, grid);
}

}  // namespace epgraph::kernels::detail
