#pragma once
#include "epgraph/comm/requires_cxx20.hpp"
// The buffers of the expert-major view (issue 14): the rows a rank received, regrouped by
// local expert slot for a grouped GEMM, the expert stage's output in the same order, and what
// the un-permute needs to bring that output back. Pure host code, like plan_workspace; the
// permute and un-permute ops (epgraph/kernels/expert_major.hpp) own one such buffer.
//
// Two forms (docs/expert-major.md):
//   packed  rows of slot s at [offsets[s], offsets[s+1]) of one array (CUTLASS grouped GEMM);
//           bound: ep_size * max_tokens * min(top_k, local_slots) rows, none can overflow (a
//           top-k entry that repeats an expert of its token is an input fault and gives no row)
//   masked  slot s owns rows [s * capacity, (s + 1) * capacity) and counts[s] says how many are
//           used (DeepGEMM's masked layout); rows past the capacity are dropped and recorded as
//           a fault with the count, never silently
// Either form can leave the payloads where dispatch put them (spec.copy_rows = false): row r is
// then received row receive_rows[r] of the receive buffers, for grouped GEMMs that gather their
// input rows by index; the permute then moves indices only.
// Regions, in order (each aligned to region_alignment):
//   payload i     [rows][payload row bytes]   the permuted payloads (hidden, FP8 scales, ...); 0
//                                             bytes without copy_rows
//   output        [rows][hidden] combine_type  the expert stage writes its rows here
//   origins       int32 [rows][3]             source rank, slot and top-k entry of each row
//   weights       fp32  [rows]                the row's top-k weight (when a weights payload is named)
//   receive_rows  int32 [rows]                without copy_rows: source * max_tokens + receive slot,
//                                             the row's index in the receive buffers
//   counts        int32 [local_slots]         rows per slot
//   offsets       int64 [local_slots + 1]     exclusive prefix of counts (packed); s * capacity (masked)
//   demand        int32 [local_slots]         rows each slot was routed this step (masked: before the cap)
//   dropped       uint64                      masked: rows dropped past a capacity, summed over every
//                                             step since the buffer was made (never silently lost)
//   entry_rows    int32 [ep][max_tokens][k]   the row of each received top-k entry, or -1 (un-permute)
//   chunk_counts  int32 [local_slots][chunks] rows per slot in each chunk of 32 receive slots
//   chunk_starts  int32 [local_slots][chunks] their exclusive prefix: where a chunk's rows start
//                                             (0 bytes for inline_scan layouts)
//   (chunks = ep_size * ceil(max_tokens / 32); the last two are the permute's scratch)
#include <cstddef>
#include <cstdint>

#include "epgraph/comm/ep_config.hpp"
#include "epgraph/comm/workspace_layout.hpp"

namespace epgraph::comm {

enum class expert_major_form : std::uint8_t { packed = 0, masked = 1 };

/// Receive slots per chunk of the permute's count and place passes.
inline constexpr int expert_major_chunk_rows = 32;

/// Small layouts (at most 32 chunks, 128 slots and 2048 counts: a decode session of up to 256
/// tokens a rank at EP4 with 64 experts a rank, or at EP2 with 128) skip the scan of the chunk
/// counts: the place pass finds the chunk starts itself, a lane per slot with every chunk's count
/// in flight at once; two dependent launches fewer (2x H200, EP2, 128 slots: T = 128 -1.4 us),
/// and neither scan scratch nor chunk_starts. Each round of 32 slots is one more round trip in
/// every place warp, hence the bounds (a first cut bounded by chunks alone lost 7.6 us at EP2,
/// T = 512: 4096 counts; perf-notes v31).
inline constexpr int expert_major_inline_scan_chunks = 32;
inline constexpr int expert_major_inline_scan_slots = 128;
inline constexpr int expert_major_inline_scan_counts = 2048;

struct expert_major_spec {
  expert_major_form form = expert_major_form::packed;
  /// Masked form: rows per local slot. 0 = ep_size * max_tokens_per_rank: every token a rank
  /// can receive, so no row can overflow. Ignored by the packed form.
  int capacity = 0;
  /// Expert slots per rank; 0 = the config's (ep_config::local_slots: expert_slots_per_rank, or
  /// experts_per_rank without a placement table).
  int local_slots = 0;
  bool weights = false;  ///< keep each row's top-k weight (for the weighted un-permute)
  /// Copy every payload into expert-major rows (true), or leave them in the receive buffers and
  /// give each row its index there (receive_rows), for GEMMs that gather their rows.
  bool copy_rows = true;
};

struct expert_major_layout {
  expert_major_form form = expert_major_form::packed;
  int local_slots = 0;
  std::size_t capacity = 0;  ///< masked: rows per slot; packed: 0
  std::size_t rows = 0;      ///< rows the buffers hold (packed: the bound; masked: slots x capacity)
  bool copy_rows = true;     ///< the payloads are copied (else receive_rows indexes them)
  region payloads[max_payloads];
  int num_payloads = 0;
  region output;
  region origins;
  region weights;  ///< 0 bytes without weights
  region receive_rows;  ///< 0 bytes with copy_rows
  region counts;
  region offsets;
  region demand;
  region dropped;
  region entry_rows;
  int chunks = 0;
  bool inline_scan = false;  ///< small enough to skip the scan (the bounds above); no chunk_starts
  region chunk_counts;
  region chunk_starts;
  std::size_t bytes = 0;  ///< all of it, rounded up to region_alignment
};

/// Sizes the expert-major buffers of one rank. Validates the config and the spec first; throws a
/// config error naming the field (a form outside the enum, a negative capacity, a capacity or
/// slot count out of range, more rows than int32 indexes, sizes that overflow).
expert_major_layout plan_expert_major(const ep_config& config, const expert_major_spec& spec);

}  // namespace epgraph::comm
