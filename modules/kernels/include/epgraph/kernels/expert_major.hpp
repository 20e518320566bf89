#pragma once
// The expert-major view of what a rank received (issue 14), for grouped-GEMM expert stages:
//
//   dispatch -> permute -> expert stage (reads and writes expert-major rows) -> un-permute -> combine
//
//                   run: collective?  constructor   allocates?          capture-safe?
//   plan_permute    -                 host only     no                  -
//   permute_op      no (local)        local         yes (its buffers)   run: yes
//   unpermute_op    no (local)        local         no (shares them)    run: yes
//   read_dropped_rows  no             -             no                  no (synchronizes)
//
// permute_op regroups every received token's rows by local expert slot, in (source, receive
// slot) order within a slot, so it is deterministic; packed (CUTLASS grouped GEMM: offsets) or
// masked (DeepGEMM: fixed capacity per slot plus counts). Each row also gets its origin
// (source, slot, top-k entry) and, when asked, its top-k weight. With spec.copy_rows = false the
// payloads stay in the receive buffers and each row gets its index there (receive_rows), for
// grouped GEMMs that gather their input rows: the permute then writes indices, not rows. A
// token that names one expert twice is an input fault: the repeat gives no row. Masked rows
// past a slot's capacity are dropped, never silently: view.demand says how many rows each slot
// was routed, the first overflow is recorded as an input fault with its count (check_faults),
// and every dropped row is added to a counter (view.dropped, read_dropped_rows) that other
// faults cannot hide.
//
// unpermute_op is the prepare-combine of such a stage: for every received token, the expert
// rows of its entries in ascending top-k entry order, each times its weight when weighted,
// summed in fp32 and rounded once to the combine type, into the workspace combine region.
// Combine's cross-rank sum is unchanged, so a token's output is, per rank in ascending order,
// that rounded partial, summed in fp32.
//
// Slots: the session's (ep_config::local_slots); with a placement table a received id is a
// physical expert and its slot is the table's (session_view::local_slot_of).
// Memory: plan_expert_major(config, spec).bytes, plus CUB's scan scratch (a few kB; none for
// the small layouts that skip the scan, expert_major_layout::inline_scan).
// The view's rows are valid from the end of permute until its next run; rows past a slot's
// count keep what earlier steps left there. Without copy_rows the input rows are the receive
// buffers': valid until this rank's combine starts (ep_session.hpp).
// Memory without copy_rows: 4 bytes of receive index per row instead of every payload row.

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "epgraph/comm/ep_session.hpp"
#include "epgraph/comm/expert_major_layout.hpp"

namespace epgraph::kernels {

namespace detail {
struct expert_major_state;  // the buffers and launch parameters (src/expert_major_ops.cpp)
}  // namespace detail

struct permute_args {
  comm::expert_major_spec spec;  ///< form, masked capacity, whether rows keep their weight
  /// The payload that carries the router weights (fp32 [top_k] per token), or -1: needed for
  /// spec.weights and for a weighted un-permute.
  int weights_payload = -1;
};

/// Device pointers of the expert-major view, for the expert stage.
struct expert_major_view {
  comm::expert_major_form form = comm::expert_major_form::packed;
  int local_slots = 0;
  std::size_t capacity = 0;           ///< masked: rows per slot
  std::size_t rows = 0;               ///< rows the buffers hold
  std::vector<const void*> payloads;  ///< per payload, [rows][row_bytes]; empty without spec.copy_rows
  void* output = nullptr;             ///< [rows][hidden] of the combine type: the expert stage writes it
  const std::int32_t* origins = nullptr;  ///< [rows][3]: source rank, receive slot, top-k entry
  const float* weights = nullptr;         ///< [rows] (spec.weights), else null
  /// Without spec.copy_rows: [rows], row r's index in the receive buffers (source * max_tokens +
  /// receive slot; ep_session::recv_payload(i), expert_stage_io::recv_payloads), else null.
  const std::int32_t* receive_rows = nullptr;
  const std::int32_t* counts = nullptr;   ///< [local_slots] rows per slot
  const std::int32_t* demand = nullptr;   ///< [local_slots] rows routed to each slot (masked: before the cap)
  const std::uint64_t* dropped = nullptr; ///< rows dropped past a masked capacity, summed over every run
  const std::int64_t* offsets = nullptr;  ///< [local_slots + 1]: packed starts; masked s * capacity
};

/// Every check permute_op's constructor makes, on the host alone (no GPU: a sweep can check
/// its configurations first); returns the buffers' layout. Throws a config error naming the
/// field: no payloads, a weights payload that is not top_k fp32, spec.weights without one,
/// spec.local_slots other than 0 or the session's slots, counters too large for shared memory,
/// and whatever plan_expert_major rejects.
comm::expert_major_layout plan_permute(const comm::ep_config& config, const permute_args& args);

class permute_op {
 public:
  /// Plans and allocates the buffers; throws a config error for a bad spec or weights payload.
  permute_op(const comm::ep_session& session, const permute_args& args);
  [[nodiscard]] cudaError_t run(cudaStream_t stream) const noexcept;
  const expert_major_view& view() const noexcept { return view_; }
  const comm::expert_major_layout& layout() const noexcept;
  /// Masked form: rows dropped past a capacity, summed over every run so far (0 for packed).
  /// Synchronizes the device; outside capture.
  std::uint64_t read_dropped_rows() const;

 private:
  friend class unpermute_op;
  comm::session_link link_;
  std::shared_ptr<const detail::expert_major_state> state_;
  expert_major_view view_;
  int grid_ = 0;
};

class unpermute_op {
 public:
  /// Reads the permute's buffers (shared: they live as long as either op). weighted needs the
  /// permute's weights payload.
  unpermute_op(const comm::ep_session& session, const permute_op& permute, bool weighted);
  [[nodiscard]] cudaError_t run(cudaStream_t stream) const noexcept;

 private:
  comm::session_link link_;
  std::shared_ptr<const detail::expert_major_state> state_;
  bool weighted_;
  bool vectorized_;
  int grid_ = 0;
};

}  // namespace epgraph::kernels
