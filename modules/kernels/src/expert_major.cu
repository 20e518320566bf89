// Expert-major permute and weighted un-permute (local kernels, issue 14).
//
// Permute, four launches, deterministic: a slot's rows come in (source, receive slot) order.
//   count  one warp per chunk of 32 receive slots: rows per local expert slot in the chunk
//   scan   CUB exclusive sum over [slot][chunk]: where each chunk's rows of each slot start
//   place  one warp per chunk again: each row's place (walking the chunk's slots in order),
//          its origin and weight, entry_rows for the un-permute; counts and offsets
//   copy   one warp per received token: its payload rows, read once, written to each place
// Un-permute: one warp per received token sums its rows (ascending top-k entry, fp32, one
// rounding) into the combine region.
#include <cub/device/device_scan.cuh>

#include "device/common.cuh"
#include "expert_major_params.hpp"

namespace epgraph::kernels::detail {
namespace {

constexpr int kChunkWarps = 4;  // count and place: warps (chunks) per CTA
constexpr int kCopyThreads = 256;

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

// The warp's share of the dynamic shared memory: the chunk's top-k ids, then a counter per slot.
struct chunk_scratch {
  std::int32_t* ids;
  int* slots;
};
__device__ inline chunk_scratch scratch_of(const expert_major_params& p, int warp) {
  extern __shared__ int shared[];
  const int per_warp = comm::expert_major_chunk_rows * p.v.top_k + p.layout.local_slots;
  int* mine = shared + warp * per_warp;
  return {mine, mine + comm::expert_major_chunk_rows * p.v.top_k};
}

__device__ inline void load_chunk_ids(const expert_major_params& p, const chunk& ch, std::int32_t* ids, int lane) {
  const comm::session_view& v = p.v;
  const std::int32_t* recv = v.window_at<const std::int32_t>(v.layout.topk_ids) +
                             (static_cast<std::size_t>(ch.src) * v.max_tokens + ch.first_slot) * v.top_k;
  for (int x = lane; x < ch.rows * v.top_k; x += 32) ids[x] = recv[x];
  __syncwarp();
}

// Lane j < k: entry j's local slot when it is the first entry of the row naming that expert
// here, else -1; *repeat says a later entry named it again. Every lane of the warp calls it.
__device__ inline int first_local_slot(const expert_major_params& p, const std::int32_t* row, int lane,
                                       bool* repeat) {
  const comm::session_view& v = p.v;
  int local = -1;
  if (lane < v.top_k) {
    const int l = row[lane] - v.rank * v.experts_per_rank;
    if (l >= 0 && l < v.experts_per_rank) local = l;
  }
  const unsigned same = __match_any_sync(~0u, local >= 0 ? local : -1 - lane);
  const bool first = local >= 0 && (same & ((1u << lane) - 1u)) == 0;
  *repeat = local >= 0 && !first;
  return first ? local : -1;
}

__global__ void count_kernel(const __grid_constant__ expert_major_params p) {
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int c = blockIdx.x * kChunkWarps + warp;
  if (c >= p.layout.chunks) return;
  const chunk_scratch s = scratch_of(p, warp);
  const int slots = p.layout.local_slots;
  for (int x = lane; x < slots; x += 32) s.slots[x] = 0;
  const chunk ch = chunk_at(p.v, c);
  load_chunk_ids(p, ch, s.ids, lane);
  for (int i = 0; i < ch.rows; ++i) {
    bool repeat = false;
    const int local = first_local_slot(p, s.ids + i * p.v.top_k, lane, &repeat);
    if (local >= 0) ++s.slots[local];  // distinct per lane: no two lanes touch one counter
    __syncwarp();
  }
  auto* counts = p.at<std::int32_t>(p.layout.chunk_counts);
  for (int x = lane; x < slots; x += 32) counts[static_cast<std::size_t>(x) * p.layout.chunks + c] = s.slots[x];
}

__global__ void place_kernel(const __grid_constant__ expert_major_params p) {
  const comm::session_view& v = p.v;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int chunks = p.layout.chunks, slots = p.layout.local_slots;
  const auto* starts = p.at<const std::int32_t>(p.layout.chunk_starts);
  const bool masked = p.layout.form == comm::expert_major_form::masked;
  const auto capacity = static_cast<long long>(p.layout.capacity);
  auto* faults = v.local_at<comm::device_faults>(v.layout.faults);
  if (blockIdx.x == 0) {  // per slot: rows, offsets, and the rows a masked slot could not hold
    const auto* counts = p.at<const std::int32_t>(p.layout.chunk_counts);
    auto* slot_rows = p.at<std::int32_t>(p.layout.counts);
    auto* offsets = p.at<std::int64_t>(p.layout.offsets);
    for (int x = threadIdx.x; x < slots; x += blockDim.x) {
      const std::size_t last = static_cast<std::size_t>(x) * chunks + chunks - 1;
      const long long first = starts[static_cast<std::size_t>(x) * chunks];
      const long long total = starts[last] + counts[last] - first;
      slot_rows[x] = static_cast<std::int32_t>(masked ? min(total, capacity) : total);
      offsets[x] = masked ? x * capacity : first;
      if (x == slots - 1) offsets[slots] = masked ? slots * capacity : first + total;
      if (masked && total > capacity)
        device::record_input_fault(&faults->input, comm::fault_code::expert_rows_over_capacity, -1, x,
                                   static_cast<int>(total - capacity));
    }
  }
  const int c = blockIdx.x * kChunkWarps + warp;
  if (c >= chunks) return;
  const chunk_scratch s = scratch_of(p, warp);
  for (int x = lane; x < slots; x += 32) s.slots[x] = starts[static_cast<std::size_t>(x) * chunks + c];
  const chunk ch = chunk_at(v, c);
  load_chunk_ids(p, ch, s.ids, lane);
  auto* origins = p.at<std::int32_t>(p.layout.origins);
  auto* weights = p.layout.weights.bytes ? p.at<float>(p.layout.weights) : nullptr;
  auto* entry_rows = p.at<std::int32_t>(p.layout.entry_rows);
  for (int i = 0; i < ch.rows; ++i) {
    const int slot = ch.first_slot + i;
    const std::size_t entry = (static_cast<std::size_t>(ch.src) * v.max_tokens + slot) * v.top_k + lane;
    bool repeat = false;
    const int local = first_local_slot(p, s.ids + i * v.top_k, lane, &repeat);
    long long row = -1;
    if (local >= 0) {
      const int packed = s.slots[local]++;
      if (!masked) {
        row = packed;
      } else if (const int within = packed - starts[static_cast<std::size_t>(local) * chunks]; within < capacity) {
        row = local * capacity + within;
      }
    }
    if (row >= 0) {
      origins[3 * row] = ch.src;
      origins[3 * row + 1] = slot;
      origins[3 * row + 2] = lane;
      if (weights) weights[row] = p.recv_weights[entry];
    }
    if (repeat) {
      comm::fault_record f;
      f.code = comm::fault_code::expert_repeated;
      f.token = slot;
      f.entry = lane;
      f.value = s.ids[i * v.top_k + lane];
      f.peer = ch.src;
      comm::device::record_fault(&faults->input, f);
    }
    if (lane < v.top_k) entry_rows[entry] = static_cast<std::int32_t>(row);
    __syncwarp();
  }
}

// One received row of one payload to each of its places; the loads of 4 vectors are issued
// before their stores.
template <class V>
__device__ void copy_row(const char* src_row, char* dst_base, std::size_t row_bytes, const int* rows, int n,
                         int lane) {
  const std::size_t nvec = row_bytes / sizeof(V);
  const V* src = reinterpret_cast<const V*>(src_row);
  constexpr int kInFlight = 4;
  for (std::size_t i0 = lane; i0 < nvec; i0 += 32 * kInFlight) {
    V x[kInFlight];
#pragma unroll
    for (int u = 0; u < kInFlight; ++u)
      if (i0 + u * 32 < nvec) x[u] = src[i0 + u * 32];
    for (int d = 0; d < n; ++d) {
      V* dst = reinterpret_cast<V*>(dst_base + static_cast<std::size_t>(rows[d]) * row_bytes);
#pragma unroll
      for (int u = 0; u < kInFlight; ++u)
        if (i0 + u * 32 < nvec) dst[i0 + u * 32] = x[u];
    }
  }
}

__global__ void __launch_bounds__(kCopyThreads) copy_kernel(const __grid_constant__ expert_major_params p) {
  const comm::session_view& v = p.v;
  __shared__ int places[kCopyThreads / 32][32];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const auto* entry_rows = p.at<const std::int32_t>(p.layout.entry_rows);
  const int total = v.ep_size * v.max_tokens;
  for (int r = blockIdx.x * (kCopyThreads / 32) + warp; r < total; r += gridDim.x * (kCopyThreads / 32)) {
    const int src = r / v.max_tokens, slot = r % v.max_tokens;
    if (slot >= received_count(v, src)) continue;
    const int row = lane < v.top_k ? entry_rows[static_cast<std::size_t>(r) * v.top_k + lane] : -1;
    const unsigned valid = __ballot_sync(~0u, row >= 0);
    if (row >= 0) places[warp][__popc(valid & ((1u << lane) - 1u))] = row;
    __syncwarp();
    const int n = __popc(valid);
    for (int i = 0; i < p.layout.num_payloads; ++i) {
      const std::size_t row_bytes = p.row_bytes[i];
      const char* src_row = v.window_local + v.row_offset(v.layout.payloads[i], src, slot, row_bytes);
      char* dst = p.buffer + p.layout.payloads[i].offset;
      device::with_vector_type(p.vec_bytes[i], [&](auto tag) {
        copy_row<decltype(tag)>(src_row, dst, row_bytes, places[warp], n, lane);
      });
    }
    __syncwarp();
  }
}

// One warp per received token: sum over its entries in ascending order of the expert rows
// (times the weight when weighted) in fp32, one rounding, into its combine row.
template <class T, int N>
__global__ void __launch_bounds__(kCopyThreads) unpermute_kernel(const __grid_constant__ expert_major_params p,
                                                                 bool weighted) {
  const comm::session_view& v = p.v;
  __shared__ int places[kCopyThreads / 32][32];
  __shared__ float scale[kCopyThreads / 32][32];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const auto* entry_rows = p.at<const std::int32_t>(p.layout.entry_rows);
  const T* out = p.at<const T>(p.layout.output);
  T* combine = v.window_at<T>(v.layout.combine);
  const int total = v.ep_size * v.max_tokens, groups = v.hidden / N;
  for (int r = blockIdx.x * (kCopyThreads / 32) + warp; r < total; r += gridDim.x * (kCopyThreads / 32)) {
    const int src = r / v.max_tokens, slot = r % v.max_tokens;
    if (slot >= received_count(v, src)) continue;
    const std::size_t entry = static_cast<std::size_t>(r) * v.top_k + lane;
    const int row = lane < v.top_k ? entry_rows[entry] : -1;
    const unsigned valid = __ballot_sync(~0u, row >= 0);
    if (row >= 0) {
      const int at = __popc(valid & ((1u << lane) - 1u));  // ascending entry order
      places[warp][at] = row;
      scale[warp][at] = weighted ? p.recv_weights[entry] : 1.0f;
    }
    __syncwarp();
    const int n = __popc(valid);
    for (int g = lane; g < groups; g += 32) {
      float acc[N];
#pragma unroll
      for (int e = 0; e < N; ++e) acc[e] = 0.0f;
      for (int d = 0; d < n; ++d) {
        float x[N];
#pragma unroll
        for (int e = 0; e < N; ++e) x[e] = 0.0f;
        device::element_group<T, N>::add(out + static_cast<std::size_t>(places[warp][d]) * v.hidden + g * N, x);
        const float w = scale[warp][d];
#pragma unroll
        for (int e = 0; e < N; ++e) acc[e] = __fadd_rn(acc[e], weighted ? __fmul_rn(w, x[e]) : x[e]);
      }
      device::element_group<T, N>::store(combine + static_cast<std::size_t>(r) * v.hidden + g * N, acc);
    }
    __syncwarp();
  }
}

template <class T>
cudaError_t launch_unpermute_as(const expert_major_params& p, bool weighted, bool vectorized, int grid,
                                cudaStream_t stream) {
  constexpr int kVector = 16 / static_cast<int>(sizeof(T));
  if (vectorized)
    unpermute_kernel<T, kVector><<<grid, kCopyThreads, 0, stream>>>(p, weighted);
  else
    unpermute_kernel<T, 1><<<grid, kCopyThreads, 0, stream>>>(p, weighted);
  return cudaGetLastError();
}

}  // namespace

cudaError_t expert_major_scan_bytes(int items, std::size_t* bytes) noexcept {
  return cub::DeviceScan::ExclusiveSum(nullptr, *bytes, static_cast<const std::int32_t*>(nullptr),
                                       static_cast<std::int32_t*>(nullptr), items);
}

cudaError_t launch_permute(const expert_major_params& p, void* scan_scratch, std::size_t scan_bytes, int grid,
                           cudaStream_t stream) noexcept {
  const int chunk_grid = (p.layout.chunks + kChunkWarps - 1) / kChunkWarps;
  count_kernel<<<chunk_grid, kChunkWarps * 32, p.shared_bytes, stream>>>(p);
  if (const cudaError_t st = cudaGetLastError(); st != cudaSuccess) return st;
  const int items = p.layout.chunks * p.layout.local_slots;
  if (const cudaError_t st = cub::DeviceScan::ExclusiveSum(scan_scratch, scan_bytes, p.at<const std::int32_t>(p.layout.chunk_counts),
                                                           p.at<std::int32_t>(p.layout.chunk_starts), items, stream);
      st != cudaSuccess)
    return st;
  place_kernel<<<chunk_grid, kChunkWarps * 32, p.shared_bytes, stream>>>(p);
  if (const cudaError_t st = cudaGetLastError(); st != cudaSuccess) return st;
  copy_kernel<<<grid, kCopyThreads, 0, stream>>>(p);
  return cudaGetLastError();
}

cudaError_t launch_unpermute(const expert_major_params& p, bool weighted, bool vectorized, int grid,
                             cudaStream_t stream) noexcept {
  switch (p.v.combine_type) {
    case comm::element_type::bf16: return launch_unpermute_as<__nv_bfloat16>(p, weighted, vectorized, grid, stream);
    case comm::element_type::fp16: return launch_unpermute_as<__half>(p, weighted, vectorized, grid, stream);
    case comm::element_type::fp32: return launch_unpermute_as<float>(p, weighted, vectorized, grid, stream);
  }
  return cudaErrorInvalidValue;
}

}  // namespace epgraph::kernels::detail
