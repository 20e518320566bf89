#pragma once
// Host reference of a whole step, written independently of the kernels: what dispatch must
// deliver where, and what combine must return. Pure host code.

#include <cstdint>
#include <vector>

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
dispatch_expectation expect_dispatch(const problem& p, const routing_table& routes);

/// Expected combine output of `rank` for one step, as floats already rounded to p.dtype,
/// [tokens][hidden]: per destination rank (ascending) the reference experts' partial sum
/// rounded to p.dtype, then those summed in fp32 and rounded to p.dtype.
std::vector<float> expect_output(const problem& p, std::uint64_t step, int rank);

/// Elements of a combine output that differ from expect_output(p, step, rank). `output` is
/// host memory holding this step's [T][hidden] rows of p.dtype (T = token_count).
long long count_wrong(const problem& p, std::uint64_t step, int rank, const void* output);

}  // namespace epgraph::sim
