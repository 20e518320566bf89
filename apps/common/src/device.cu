#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "epgraph/sim/device.hpp"

namespace epgraph::sim {
namespace {

template <class T>
__device__ inline T to_element(float x);
template <>
__device__ inline __nv_bfloat16 to_element(float x) { return __float2bfloat16_rn(x); }
template <>
__device__ inline __half to_element(float x) { return __float2half_rn(x); }
template <>
__device__ inline float to_element(float x) { return x; }

__device__ inline float from_element(__nv_bfloat16 x) { return __bfloat162float(x); }
__device__ inline float from_element(__half x) { return __half2float(x); }
__device__ inline float from_element(float x) { return x; }

template <class T>
__global__ void generate_kernel(const problem p, int rank, std::uint64_t step, batch_buffers out) {
  const int tokens = token_count(p, rank, step);
  if (blockIdx.x == 0 && threadIdx.x == 0) *out.num_tokens = tokens;
  T* hidden = static_cast<T*>(out.hidden);
  for (int t = blockIdx.x; t < tokens; t += gridDim.x) {
    if (threadIdx.x < p.top_k) {
      const std::size_t at = static_cast<std::size_t>(t) * p.top_k + threadIdx.x;
      out.topk_ids[at] = expert_id(p, rank, step, t, threadIdx.x);
      out.weights[at] = router_weight(p, rank, step, t, threadIdx.x);
    }
    for (int h = threadIdx.x; h < p.hidden; h += blockDim.x)
      hidden[static_cast<std::size_t>(t) * p.hidden + h] = to_element<T>(hidden_value(p, rank, step, t, h));
  }
}

__global__ void pattern_kernel(std::uint8_t* dst, std::size_t rows, std::size_t row_bytes, std::uint64_t seed) {
  const std::size_t n = rows * row_bytes;
  for (std::size_t i = blockIdx.x * std::size_t(blockDim.x) + threadIdx.x; i < n; i += std::size_t(gridDim.x) * blockDim.x)
    dst[i] = pattern_byte(seed, i / row_bytes, i % row_bytes);
}

__global__ void set_count_kernel(std::int32_t* num_tokens, int value) { *num_tokens = value; }

// One block per received row. __fmul_rn/__fadd_rn keep the fp32 order the host reference
// uses (no FMA contraction), so the demo's check is exact.
// The logical expert entry id serves on this rank, or -1: by the placement table when there is
// one (the ids are physical then), else the contiguous rule.
__device__ inline int local_logical_expert(const problem& p, int rank, const comm::placement_ref& table, int id) {
  if (table.rank_of == nullptr) {
    const int first = rank * (p.num_experts / p.ep_size);
    return id >= first && id < first + p.num_experts / p.ep_size ? id : -1;
  }
  return id >= 0 && id < table.physical && table.rank_of[id] == rank ? table.logical_of[id] : -1;
}

// The dequantization multiplier of a UE8M0 scale byte: 2^(byte - 127), exact.
__device__ inline float ue8m0_value(std::uint8_t byte) {
  return byte == 0 ? __uint_as_float(0x00400000u) : __uint_as_float(static_cast<std::uint32_t>(byte) << 23);
}

// The hidden rows the reference experts read: as received (T), or with problem.quantize the
// e4m3 codes and block scales the quantizing dispatch delivered, read as code x scale (one
// fp32 rounding, as the host reference).
template <class T>
struct hidden_rows {
  const void* rows;
  const void* scales;  // quantize only: [row][blocks] fp32 or UE8M0 bytes
  int hidden;
  bool quantized, ue8m0;

  __device__ float at(long long r, int h) const {
    const std::size_t i = static_cast<std::size_t>(r) * hidden + h;
    if (!quantized) return from_element(static_cast<const T*>(rows)[i]);
    const std::size_t b = static_cast<std::size_t>(r) * kernels::fp8::blocks_of(hidden) + h / kernels::fp8::block;
    const float scale = ue8m0 ? ue8m0_value(static_cast<const std::uint8_t*>(scales)[b])
                              : static_cast<const float*>(scales)[b];
    return __fmul_rn(kernels::fp8::from_e4m3(static_cast<const std::uint8_t*>(rows)[i]), scale);
  }
};

template <class T>
__global__ void experts_kernel(const problem p, int rank, const comm::placement_ref table, const std::int32_t* counts,
                               const std::int32_t* ids, const float* weights, const hidden_rows<T> hidden, T* output) {
  __shared__ int s_expert[32];
  __shared__ float s_factor[32];
  const int rows = p.ep_size * p.max_tokens;
  for (int r = blockIdx.x; r < rows; r += gridDim.x) {
    const int src = r / p.max_tokens, slot = r % p.max_tokens;
    if (slot >= min(counts[src], p.max_tokens)) continue;  // block-uniform
    if (threadIdx.x < p.top_k) {
      const int e = local_logical_expert(p, rank, table, ids[static_cast<std::size_t>(r) * p.top_k + threadIdx.x]);
      const bool mine = e >= 0;
      s_expert[threadIdx.x] = mine ? e : -1;
      s_factor[threadIdx.x] =
          mine ? __fmul_rn(weights[static_cast<std::size_t>(r) * p.top_k + threadIdx.x], expert_scale(e)) : 0.f;
    }
    __syncthreads();
    T* y = output + static_cast<std::size_t>(r) * p.hidden;
    for (int h = threadIdx.x; h < p.hidden; h += blockDim.x) {
      const float xv = hidden.at(r, h);
      float acc = 0.f;
      for (int j = 0; j < p.top_k; ++j)
        if (s_expert[j] >= 0) acc = __fadd_rn(acc, __fmul_rn(s_factor[j], xv));
      y[h] = to_element<T>(acc);
    }
    __syncthreads();
  }
}

// Expert-major stage: one block per row; row r of local slot s holds a token for the expert of
// that slot (rank * experts_per_rank + s, or the table's slot_expert) and becomes scale(e) * x
// (exact in every dtype: problem.hpp), so the weighted un-permute reproduces expected_output's
// sums bit for bit.
struct expert_major_rows {  // the plain part of kernels::expert_major_view (no std::vector)
  bool masked;
  int local_slots;
  long long capacity, rows;
  void* output;
  const std::int32_t* counts;
  const std::int64_t* offsets;
  const std::int32_t* receive_rows;  // the view without copied rows: row r is received row receive_rows[r]
};

template <class T>
__global__ void expert_major_kernel(const problem p, int rank, const comm::placement_ref table,
                                    const expert_major_rows view, const hidden_rows<T> hidden) {
  const bool masked = view.masked;
  const long long rows = masked ? view.rows : view.offsets[view.local_slots];
  T* y_all = static_cast<T*>(view.output);
  for (long long r = blockIdx.x; r < rows; r += gridDim.x) {
    int s = 0;
    if (masked) {
      s = static_cast<int>(r / view.capacity);
      if (r - s * view.capacity >= view.counts[s]) continue;  // block-uniform
    } else {
      int lo = 0, hi = view.local_slots;  // the last slot whose start is <= r
      while (hi - lo > 1) {
        const int mid = (lo + hi) / 2;
        (view.offsets[mid] <= r ? lo : hi) = mid;
      }
      s = lo;
    }
    const int e = table.slot_expert ? table.slot_expert[rank * table.local_slots + s] : rank * (p.num_experts / p.ep_size) + s;
    const float scale = expert_scale(e);
    T* y = y_all + r * p.hidden;
    const long long x = view.receive_rows ? view.receive_rows[r] : r;  // the gathered input row
    for (int h = threadIdx.x; h < p.hidden; h += blockDim.x) y[h] = to_element<T>(__fmul_rn(scale, hidden.at(x, h)));
  }
}

template <class T>
__global__ void check_kernel(const problem p, int rank, std::uint64_t step, const T* out, unsigned long long* wrong) {
  __shared__ int s_expert[32];
  __shared__ float s_weight[32];
  const auto round = [](float v) { return from_element(to_element<T>(v)); };
  const int tokens = token_count(p, rank, step);
  unsigned long long mine = 0;
  for (int t = blockIdx.x; t < tokens; t += gridDim.x) {
    if (threadIdx.x < p.top_k) {
      s_expert[threadIdx.x] = expert_id(p, rank, step, t, threadIdx.x);
      s_weight[threadIdx.x] = router_weight(p, rank, step, t, threadIdx.x);
    }
    __syncthreads();
    for (int h = threadIdx.x; h < p.hidden; h += blockDim.x) {
      const float want = expected_output(p, s_expert, s_weight, round(hidden_value(p, rank, step, t, h)), round);
      mine += from_element(out[static_cast<std::size_t>(t) * p.hidden + h]) != want;
    }
    __syncthreads();
  }
  if (mine) atomicAdd(wrong, mine);
}

// The input the reference experts see for element h of a token whose bf16-rounded hidden
// values are x (problem.quantize: this lane's 4 elements of one 128-block, quantized with the
// block's amax by fp8_quantize.hpp's rules, read back as code x scale).
__device__ inline float warp_amax(float a) {
  for (int offset = 16; offset > 0; offset >>= 1) a = fmaxf(a, __shfl_xor_sync(~0u, a, offset));
  return a;
}

// code x scale of v quantized in a block whose largest |value| is amax (fp8_quantize.hpp).
__device__ inline float fp8_round_trip(float v, float amax, kernels::fp8::scale_format format) {
  namespace fp8 = kernels::fp8;
  if (format == fp8::scale_format::ue8m0) {
    const int k = fp8::ue8m0_exponent(amax);
    return __fmul_rn(fp8::from_e4m3(fp8::to_e4m3(__fmul_rn(v, fp8::exp2_negated(k)))),
                     ue8m0_value(static_cast<std::uint8_t>(k + 127)));
  }
  return __fmul_rn(fp8::from_e4m3(fp8::to_e4m3(__fmul_rn(v, fp8::fp32_inverse_scale(amax)))), fp8::fp32_scale(amax));
}

// The device check of a step with problem.quantize or a reduced combine precision (and the
// expert-major order of problem.expert_major, see reference.cpp): one warp per
// 128-block of a token's row, 4 elements per lane, so a block's amax is a warp reduction. Per
// destination rank (ascending) the reference experts' partial is rounded to dtype, then reduced
// as prepare-combine does (fp8: quantized with its block's amax, read back as code x scale;
// bf16: rounded to bf16), summed in fp32 and rounded to dtype.
template <class T>
__global__ void check_reduced_kernel(const problem p, int rank, std::uint64_t step, const T* out,
                                     unsigned long long* wrong) {
  __shared__ int s_expert[32], s_owner[32];
  __shared__ float s_weight[32];
  const auto round = [](float v) { return from_element(to_element<T>(v)); };
  const int tokens = token_count(p, rank, step), lane = threadIdx.x & 31, warps = blockDim.x >> 5;
  const int blocks = kernels::fp8::blocks_of(p.hidden);
  unsigned long long mine = 0;
  for (int t = blockIdx.x; t < tokens; t += gridDim.x) {
    if (threadIdx.x < p.top_k) {
      s_expert[threadIdx.x] = expert_id(p, rank, step, t, threadIdx.x);
      s_owner[threadIdx.x] = owner_rank(p, s_expert[threadIdx.x]);
      s_weight[threadIdx.x] = router_weight(p, rank, step, t, threadIdx.x);
    }
    __syncthreads();
    for (int b = threadIdx.x >> 5; b < blocks; b += warps) {  // warp-uniform
      float x[4], total[4] = {};
      bool valid[4];
      float amax = 0.f;
      for (int i = 0; i < 4; ++i) {
        const int h = b * kernels::fp8::block + lane * 4 + i;
        valid[i] = h < p.hidden;
        x[i] = valid[i] ? round(hidden_value(p, rank, step, t, h)) : 0.f;
        amax = fmaxf(amax, fabsf(x[i]));
      }
      if (p.quantize) {
        amax = warp_amax(amax);
        for (int i = 0; i < 4; ++i) x[i] = fp8_round_trip(x[i], amax, p.scales);
      }
      for (int d = 0; d < p.ep_size; ++d) {
        bool routed = false;
        float partial[4] = {};
        for (int j = 0; j < p.top_k; ++j) {
          if (s_owner[j] != d) continue;
          routed = true;
          const float factor = mul_rn(s_weight[j], expert_scale(s_expert[j]));
          for (int i = 0; i < 4; ++i)  // the two orders of reference.cpp's expect_output
            partial[i] = add_rn(partial[i], p.expert_major
                                                ? mul_rn(s_weight[j], round(mul_rn(expert_scale(s_expert[j]), x[i])))
                                                : mul_rn(factor, x[i]));
        }
        if (!routed) continue;  // warp-uniform
        float part_amax = 0.f;
        for (int i = 0; i < 4; ++i) {
          partial[i] = round(partial[i]);
          part_amax = fmaxf(part_amax, fabsf(partial[i]));
        }
        if (p.combine == kernels::combine_precision::fp8) part_amax = warp_amax(part_amax);
        for (int i = 0; i < 4; ++i) {
          const float pulled = p.combine == kernels::combine_precision::fp8
                                   ? fp8_round_trip(partial[i], part_amax, kernels::fp8::scale_format::fp32)
                               : p.combine == kernels::combine_precision::bf16
                                   ? __bfloat162float(__float2bfloat16_rn(partial[i]))
                                   : partial[i];
          total[i] = add_rn(total[i], pulled);
        }
      }
      for (int i = 0; i < 4; ++i)
        if (valid[i]) {
          const int h = b * kernels::fp8::block + lane * 4 + i;
          mine += from_element(out[static_cast<std::size_t>(t) * p.hidden + h]) != round(total[i]);
        }
    }
    __syncthreads();
  }
  if (mine) atomicAdd(wrong, mine);
}

template <class F>
cudaError_t by_type(comm::element_type t, F&& f) {
  switch (t) {
    case comm::element_type::bf16: return f(__nv_bfloat16{});
    case comm::element_type::fp16: return f(__half{});
    case comm::element_type::fp32: return f(float{});
  }
  return cudaErrorInvalidValue;
}

}  // namespace

cudaError_t generate_batch(const problem& p, int rank, std::uint64_t step, const batch_buffers& out,
                           cudaStream_t stream) noexcept {
  return by_type(p.dtype, [&](auto tag) {
    generate_kernel<decltype(tag)><<<1024, 256, 0, stream>>>(p, rank, step, out);
    return cudaGetLastError();
  });
}

cudaError_t fill_pattern(void* dst, std::size_t rows, std::size_t row_bytes, std::uint64_t seed,
                         cudaStream_t stream) noexcept {
  pattern_kernel<<<512, 256, 0, stream>>>(static_cast<std::uint8_t*>(dst), rows, row_bytes, seed);
  return cudaGetLastError();
}

cudaError_t set_token_count(std::int32_t* num_tokens, int value, cudaStream_t stream) noexcept {
  set_count_kernel<<<1, 1, 0, stream>>>(num_tokens, value);
  return cudaGetLastError();
}

cudaError_t reference_experts(const problem& p, const graph::expert_stage_io& io, cudaStream_t stream) noexcept {
  if (io.recv_payloads.size() < 2) return cudaErrorInvalidValue;  // make_config's hidden + weights
  return by_type(p.dtype, [&](auto tag) {
    using T = decltype(tag);
    const bool ue8m0 = p.scales == kernels::fp8::scale_format::ue8m0;
    if (io.expert_major) {
      const kernels::expert_major_view& v = *io.expert_major;
      // Copied rows, or (receive_rows) the receive buffers' rows by index.
      const std::vector<const void*>& in = v.receive_rows ? io.recv_payloads : v.payloads;
      if (p.quantize && in.size() < 3) return cudaErrorInvalidValue;
      if (in.empty()) return cudaErrorInvalidValue;
      const expert_major_rows rows{v.form == comm::expert_major_form::masked, v.local_slots,
                                   static_cast<long long>(v.capacity), static_cast<long long>(v.rows), v.output,
                                   v.counts, v.offsets, v.receive_rows};
      const hidden_rows<T> hidden{in[0], p.quantize ? in[2] : nullptr, p.hidden, p.quantize, ue8m0};
      expert_major_kernel<T><<<1024, 256, 0, stream>>>(p, io.rank, io.placement, rows, hidden);
      return cudaGetLastError();
    }
    if (p.quantize && io.recv_payloads.size() < 3) return cudaErrorInvalidValue;
    const hidden_rows<T> hidden{io.recv_payloads[0], p.quantize ? io.recv_payloads[2] : nullptr, p.hidden, p.quantize,
                                ue8m0};
    experts_kernel<T><<<1024, 256, 0, stream>>>(p, io.rank, io.placement, io.recv_counts, io.recv_topk_ids,
                                                static_cast<const float*>(io.recv_payloads[1]), hidden,
                                                static_cast<T*>(io.output));
    return cudaGetLastError();
  });
}

cudaError_t check_output(const problem& p, int rank, std::uint64_t step, const void* output,
                         unsigned long long* wrong, cudaStream_t stream) noexcept {
  return by_type(p.dtype, [&](auto tag) {
    using T = decltype(tag);
    if (p.quantize || p.combine != kernels::combine_precision::exact)
      check_reduced_kernel<T><<<264, 256, 0, stream>>>(p, rank, step, static_cast<const T*>(output), wrong);
    else
      check_kernel<T><<<264, 256, 0, stream>>>(p, rank, step, static_cast<const T*>(output), wrong);
    return cudaGetLastError();
  });
}

graph::expert_stage reference_expert_stage(const problem& p) {
  return [p](const graph::expert_stage_io& io, cudaStream_t s) { return reference_experts(p, io, s); };
}

graph::step_spec zero_copy_step(const comm::ep_session& session, const batch_storage& batch, const problem& p) {
  graph::step_spec spec;
  spec.dispatch = batch.dispatch_args();
  spec.combine = batch.combine_args();
  spec.experts = reference_expert_stage(p);
  spec.expert_output = session.combine_region();
  return spec;
}

}  // namespace epgraph::sim
