#pragma once
// Plain launch parameters shared by the host planners and the device kernels.
// Host-visible and trivially copyable; built once at planning time, passed by value.

#include <cstddef>
#include <cstdint>

#include "epgraph/comm/ep_config.hpp"
#include "epgraph/comm/session_view.hpp"
#include "epgraph/kernels/fp8_quantize.hpp"

namespace epgraph::kernels {

/// One row stream a dispatch pushes: source rows [T][row_bytes] into the window region `dst`
/// laid out [ep][max_tokens][row_bytes] of each destination in this rank's domain, and into
/// the remote-state region `stage` laid out [remote][max_tokens][row_bytes] for the others (sent by
/// NCCL after the kernel). vec_bytes: 16/8/4/2/1.
///
/// A quantizing copy (quantize set, issue 15) reads bf16 rows [T][row_bytes elements] from
/// src, and sends each token's e4m3 codes (row_bytes bytes) to dst/stage and its 1x128 block
/// scales (scales_row_bytes: 4 or 1 byte per block) to scales_dst/scales_stage; vec_bytes is
/// 16 when the codes rows are 16-byte aligned (hidden % 16 == 0), else 8: the codes per lane
/// and warp step the kernel may use (dispatch.cu takes 8 for whole tokens on 2 ranks, where 16
/// was slower).
struct copy_spec {
  const char* src;
  std::size_t row_bytes;
  comm::region dst;
  comm::region stage;
  int vec_bytes;
  bool quantize = false;
  fp8::scale_format scales = fp8::scale_format::fp32;
  comm::region scales_dst{};
  comm::region scales_stage{};
  std::size_t scales_row_bytes = 0;
};

inline constexpr int max_copies = comm::max_payloads + 1;  // payloads + the implicit top-k ids

/// Shared-memory words of a placement table cached per dispatch CTA (2 per logical expert, 2 per
/// physical one); a larger table is read from global memory.
inline constexpr int max_cached_table_words = 8192;

/// The copies in the order the push takes them, planned on the host with the copies
/// (device::push_items::plan): the sliced ones first, then those one warp moves in one round,
/// each in copy order. Worked out in the kernel (a loop over the copy table per item), it was
/// part of ~0.8 us of one warp's arithmetic between a small batch's slots and its first store
/// (perf-notes v39).
struct push_order {
  std::int8_t large = 0;             ///< copies cut into slices at small T
  std::int8_t small = 0;             ///< copies one warp moves in one round
  std::int8_t copy[max_copies] = {};  ///< copy indices: the large ones, then the small ones
};

struct dispatch_params {
  comm::session_view v;
  const std::int32_t* num_tokens;
  const std::int32_t* topk_ids;
  int num_copies;
  copy_spec copies[max_copies];
  push_order order;
  int table_cache_bytes;  ///< placement table cached in shared memory (0: none, or read from global)
};

/// What combine pulls from the combine region; documented with combine_args (ops.hpp).
enum class combine_precision : std::uint8_t { exact = 0, fp8 = 1, bf16 = 2 };

/// Combine reads the token count the last dispatch recorded (layout.dispatched), never the
/// caller's scalar again: rows always match the slots dispatch wrote.
struct combine_params {
  comm::session_view v;
  void* output;
  comm::element_type output_type;
  bool vectorized;  ///< 8 elements per lane step (hidden % 8 == 0, 16-byte aligned output)
  combine_precision precision;  ///< what the combine region holds (fp8: 16 per lane step)
};

}  // namespace epgraph::kernels
