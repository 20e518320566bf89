#pragma once
// Device helpers shared by the epgraph kernels.
//
// Contract (read this first):
//  * Token counts are read from device memory and clamped to [0, max_tokens]; a count
//    outside that range is recorded as a fault (first fault wins) and never causes an
//    out-of-bounds access.
//  * Expert ids outside [-1, num_experts) are skipped and recorded; -1 means "no expert".
//  * Rows move as vectors of V (16/8/4/2/1 bytes) chosen on the host from the row size
//    and the pointer alignment it validated.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "epgraph/comm/expert_placement.hpp"
#include "epgraph/comm/faults.cuh"
#include "epgraph/comm/session_view.hpp"

namespace epgraph::kernels {
/// Register budget of the collective kernels: one CTA of up to 512 threads per SM (the
/// grid is at most one CTA per SM anyway), so the combine pull keeps its loads in registers.
inline constexpr int kMaxThreads = comm::max_threads_per_cta;
}  // namespace epgraph::kernels

namespace epgraph::kernels::device {

/// A word of a launch tag (high half) and a count (low half): dispatch's look-back entries and
/// push claim words, so that a word from another launch never matches this one's.
__device__ inline unsigned long long tagged_count(unsigned int tag, unsigned int count) {
  return (static_cast<unsigned long long>(tag) << 32) | count;
}

// ---- input faults ------------------------------------------------------------------------

__device__ inline void record_input_fault(comm::fault_record* input, comm::fault_code code, int token, int entry,
                                          int value) {
  comm::fault_record f;
  f.code = code;
  f.token = token;
  f.entry = entry;
  f.value = value;
  comm::device::record_fault(input, f);
}

/// The token count a kernel works with: `requested` (the caller's scalar) clamped into
/// [0, max_tokens], reporting a value outside it when `report`.
__device__ inline int clamp_token_count(int requested, int max_tokens, comm::fault_record* input, bool report) {
  int t = requested;
  if (t > max_tokens) {
    if (report) record_input_fault(input, comm::fault_code::token_count_above_max, -1, -1, t);
    t = max_tokens;
  }
  if (t < 0) {
    if (report) record_input_fault(input, comm::fault_code::token_count_negative, -1, -1, t);
    t = 0;
  }
  return t;
}

/// With a placement table: the physical expert token t uses for entry e; -1 ("no expert") for an
/// id that is not a logical expert, since some of those are valid physical ids at a receiver.
__device__ inline int physical_expert(const comm::placement_ref& table, int e, int t) {
  if (e < 0 || e >= table.num_experts) return -1;
  return comm::choose_replica(e, t, table.replica_offsets, table.replica_ids);
}

/// A placement table cached in one CTA's shared memory: per logical expert (first replica,
/// replicas), per replica (rank, physical id). One lookup is two shared loads instead of three
/// dependent global ones.
struct table_cache {
  int2* info;     ///< [num_experts]
  int2* replica;  ///< [physical]
  int num_experts;

  /// Every thread of the CTA; the caller's next __syncthreads() publishes it.
  __device__ void fill(const comm::placement_ref& t) {
    for (int e = threadIdx.x; e < t.num_experts; e += blockDim.x) {
      const int first = t.replica_offsets[e], next = t.replica_offsets[e + 1];
      info[e] = make_int2(first, next - first);
    }
    for (int i = threadIdx.x; i < t.physical; i += blockDim.x) {
      const int id = t.replica_ids[i];
      replica[i] = id >= 0 ? make_int2(t.rank_of[id], id) : make_int2(-1, -1);
    }
  }
  /// (rank, physical id) of the replica token t uses for valid logical expert e (choose_replica).
  __device__ int2 chosen(int e, int t) const {
    const int2 in = info[e];
    return replica[in.x + static_cast<int>(static_cast<unsigned>(t) % static_cast<unsigned>(in.y))];
  }
  /// physical_expert's answer from the cache: -1 for an id that is no logical expert.
  __device__ int physical(int e, int t) const { return e < 0 || e >= num_experts ? -1 : chosen(e, t).y; }
};

/// Records the first id of token t outside [-1, num_experts), for a mask computed without
/// reports (a cold path: not inlined).
__device__ __noinline__ inline void report_invalid_ids(const std::int32_t* topk_ids, int t, int k, int num_experts,
                                                comm::fault_record* input) {
  const std::int32_t* ids = topk_ids + static_cast<std::size_t>(t) * k;
  for (int j = 0; j < k; ++j)
    if (ids[j] < -1 || ids[j] >= num_experts) {
      record_input_fault(input, comm::fault_code::expert_id_out_of_range, t, j, ids[j]);
      return;
    }
}

/// Bit d set if token t has an expert on rank d: rank_of(e) for each valid entry e (without
/// a placement table e / experts_per_rank; with one, the rank of the replica token t uses).
/// Ids outside [-1, num_experts) are skipped and set `invalid`; the first is recorded when
/// `report`. -1 means "no expert".
template <class RankOf>
__device__ inline std::uint64_t destination_mask(const std::int32_t* topk_ids, int t, int k, int num_experts,
                                                 RankOf rank_of, comm::fault_record* input, bool report,
                                                 bool& invalid) {
  std::uint64_t mask = 0;
  const std::int32_t* ids = topk_ids + static_cast<std::size_t>(t) * k;
  for (int j = 0; j < k; ++j) {
    const int e = ids[j];
    if (e == -1) continue;
    if (e < -1 || e >= num_experts) {
      if (report && !invalid) record_input_fault(input, comm::fault_code::expert_id_out_of_range, t, j, e);
      invalid = true;
      continue;
    }
    const int rank = rank_of(e);
    if (rank >= 0 && rank < 64) mask |= std::uint64_t{1} << rank;  // a checked table always has it
  }
  return mask;
}

// ---- per-token destination slots, spread over the warp --------------------------------

/// Lane l holds the slot of destinations l and l + 32 (ep <= 64). Warp-uniform queries.
struct warp_slots {
  int lo, hi;
  std::uint64_t mask;

  __device__ static warp_slots load(const std::int32_t* token_slots, int t, int ep, int lane) {
    const std::int32_t* row = token_slots + static_cast<std::size_t>(t) * ep;
    warp_slots s;
    s.lo = lane < ep ? row[lane] : -1;
    s.hi = lane + 32 < ep ? row[lane + 32] : -1;
    s.mask = __ballot_sync(~0u, s.lo >= 0) | (std::uint64_t{__ballot_sync(~0u, s.hi >= 0)} << 32);
    return s;
  }
  /// Must be called by the whole warp with the same d.
  __device__ int slot(int d) const { return d < 32 ? __shfl_sync(~0u, lo, d) : __shfl_sync(~0u, hi, d - 32); }
};

// ---- element conversion ----------------------------------------------------------------

template <class T>
__device__ inline float to_float(T x);
template <>
__device__ inline float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }
template <>
__device__ inline float to_float(__half x) { return __half2float(x); }
template <>
__device__ inline float to_float(float x) { return x; }

template <class T>
__device__ inline T from_float(float x);
template <>
__device__ inline __nv_bfloat16 from_float(float x) { return __float2bfloat16_rn(x); }
template <>
__device__ inline __half from_float(float x) { return __float2half_rn(x); }
template <>
__device__ inline float from_float(float x) { return x; }

/// N consecutive elements as one or more 16-byte accesses (N * sizeof(T) is 16 or 32),
/// or a scalar when N == 1.
template <class T, int N>
struct element_group {
  static_assert(N == 1 || (N * sizeof(T)) % 16 == 0, "vector groups are whole 16-byte words");
  static constexpr int words = N == 1 ? 0 : static_cast<int>(N * sizeof(T) / 16);

  /// Raw words of one group, so loads can be issued before any of them is consumed.
  struct raw {
    uint4 w[words > 0 ? words : 1];
  };
  __device__ static raw load(const T* p) {
    raw r;
#pragma unroll
    for (int w = 0; w < words; ++w) r.w[w] = reinterpret_cast<const uint4*>(p)[w];
    return r;
  }
  __device__ static void accumulate(const raw& r, float (&acc)[N]) {
#pragma unroll
    for (int w = 0; w < words; ++w) {
      const T* e = reinterpret_cast<const T*>(&r.w[w]);
#pragma unroll
      for (int i = 0; i < 16 / static_cast<int>(sizeof(T)); ++i) acc[w * (16 / sizeof(T)) + i] += to_float(e[i]);
    }
  }

  __device__ static void add(const T* p, float (&acc)[N]) {
    if constexpr (N == 1) {
      acc[0] += to_float(*p);
    } else {
#pragma unroll
      for (int w = 0; w < words; ++w) {
        uint4 raw = reinterpret_cast<const uint4*>(p)[w];
        const T* e = reinterpret_cast<const T*>(&raw);
#pragma unroll
        for (int i = 0; i < 16 / static_cast<int>(sizeof(T)); ++i) acc[w * (16 / sizeof(T)) + i] += to_float(e[i]);
      }
    }
  }
  __device__ static void store(T* p, const float (&v)[N]) {
    if constexpr (N == 1) {
      *p = from_float<T>(v[0]);
    } else {
#pragma unroll
      for (int w = 0; w < words; ++w) {
        uint4 raw;
        T* e = reinterpret_cast<T*>(&raw);
#pragma unroll
        for (int i = 0; i < 16 / static_cast<int>(sizeof(T)); ++i) e[i] = from_float<T>(v[w * (16 / sizeof(T)) + i]);
        reinterpret_cast<uint4*>(p)[w] = raw;
      }
    }
  }
};

/// Calls f(type_tag) with the vector type for a width in bytes.
template <class F>
__device__ inline void with_vector_type(int vec_bytes, F&& f) {
  switch (vec_bytes) {
    case 16: f(uint4{}); break;
    case 8: f(uint2{}); break;
    case 4: f(std::uint32_t{}); break;
    case 2: f(std::uint16_t{}); break;
    default: f(std::uint8_t{}); break;
  }
}

}  // namespace epgraph::kernels::device
