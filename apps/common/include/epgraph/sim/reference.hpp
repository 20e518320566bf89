#pragma once
// Host reference of a whole step, written independently of the kernels: what dispatch must
// deliver where, and what combine must return. Pure host code.

#include <cstdint>
#include <functional>
#include <vector>

#include "epgraph/comm/expert_placement.hpp"
#include "epgraph/sim/problem.hpp"

namespace epgraph::sim {

/// Rounds like the device's conversions (round to nearest even) and back to float.
float round_to(comm::element_type t, float x);
/// Encodes a float (already representable) into the bytes of `t` (2 or 4 bytes).
void store_element(comm::element_type t, float x, void* dst);
float load_element(comm::element_type t, const void* src);

/// Routing of every rank in one step, as the kernels see it.
struct routing_table {
  std::vector<int> tokens;                     ///< [src] token count
  std::vector<std::vector<std::int32_t>> ids;  ///< [src][token * k + j]
};
routing_table draw_routing(const problem& p, std::uint64_t step);

/// Expected result of dispatch for one step.
struct dispatch_expectation {
  std::vector<std::vector<int>> counts;               ///< [dst][src]
  std::vector<std::vector<std::vector<int>>> slot;    ///< [src][token][dst] slot or -1
  std::vector<std::vector<std::vector<int>>> origin;  ///< [dst][src][slot] source token
};
/// Slot i at a destination holds the i-th token of the source routed there (source order).
/// Invalid ids (outside [-1, experts)) are skipped.
/// With a placement (a session with a placement table), a token goes to the ranks of the
/// replicas it chose (choose_replica by its index).
dispatch_expectation expect_dispatch(const problem& p, const routing_table& routes,
                                     const comm::expert_placement* placement = nullptr);

/// The rows `rank` receives, in expert-major order (what permute_op must produce), for any
/// expert placement. rows[s] lists every (source, slot, top-k
/// entry) whose entry chose a physical expert in local slot s of `rank` (choose_replica by the
/// source token index), in (source, slot, entry) order; an entry that repeats an expert of its
/// token gives no row (an input fault). A source's token takes the next slot
/// at `rank` when any of its entries is placed there (source order, one slot per rank), so
/// with the default placement the slots are expect_dispatch's.
struct expert_row {
  int src, slot, entry;
};
std::vector<std::vector<expert_row>> expect_expert_major(const problem& p, const routing_table& routes,
                                                         const comm::expert_placement& placement, int rank);
/// The packed form's offsets: the exclusive prefix of the rows per slot ([slots + 1]).
std::vector<std::int64_t> packed_offsets(const std::vector<std::vector<expert_row>>& rows);

/// The weighted un-permute (what unpermute_op must produce), the prepare-combine of an expert
/// stage that writes expert-major output. For every received (source, slot): its rows, over every
/// local slot, taken in ascending top-k entry order, each times its weight (1 when unweighted),
/// summed in fp32 and rounded once to `out_type`. expert_out[s][i] is the output row (`hidden`
/// floats) of rows[s][i]; weight(src, slot, entry) gives a row's top-k weight; received[src]
/// is the slot count from each source. Result: [src][slot][hidden]; a received token without a
/// row here (all its rows dropped by a masked capacity) gets a zero row.
std::vector<std::vector<std::vector<float>>> expect_unpermute(
    const std::vector<std::vector<expert_row>>& rows, const std::vector<std::vector<std::vector<float>>>& expert_out,
    const std::vector<int>& received, int hidden, bool weighted, const std::function<float(int, int, int)>& weight,
    comm::element_type out_type);

/// Expected combine output of `rank` for one step, as floats already rounded to p.dtype,
/// [tokens][hidden]: per destination rank (ascending) the reference experts' partial sum
/// rounded to p.dtype, then those summed in fp32 and rounded to p.dtype. With p.quantize the
/// experts read each hidden row as the host reference quantizer's code x scale; with a reduced
/// p.combine each partial row is pulled as prepare-combine reduced it (fp8: quantized by the
/// host reference quantizer with 1x128 fp32 scales, read as code x scale; bf16: rounded to
/// bf16) before it is added.
std::vector<float> expect_output(const problem& p, std::uint64_t step, int rank,
                                 const comm::expert_placement* placement = nullptr);

/// Elements of a combine output that differ from expect_output(p, step, rank). `output` is
/// host memory holding this step's [T][hidden] rows of p.dtype (T = token_count).
long long count_wrong(const problem& p, std::uint64_t step, int rank, const void* output,
                      const comm::expert_placement* placement = nullptr);

}  // namespace epgraph::sim
