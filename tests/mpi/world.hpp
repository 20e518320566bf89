#pragma once
// The MPI test world: one process per GPU, shared by every test of the binary.
#include <cstdint>

#include "epgraph/comm/mpi_context.hpp"
#include "epgraph/comm/nccl_comm.hpp"
#include "epgraph/sim/problem.hpp"

namespace epgraph::mpitest {
comm::mpi_context& mpi();
comm::nccl_comm& world_comm();
/// Collective: true only if every rank passes true (so ranks branch together).
bool all_ok(bool ok);
/// Ranks per NVLink domain for the tests that take it from the run (EPGRAPH_TEST_DOMAIN_SIZE;
/// 0 or unset: NCCL's NVLink team, one domain on one machine), so scripts/gpu-check.sh runs
/// them at every domain size.
int domain_size();
/// Environment variable `name` as a whole decimal number in [least, most]; unset or empty:
/// fallback. Anything else throws std::invalid_argument naming the variable and the range (the
/// same on every rank, which reads the same environment), so a typo never passes silently.
std::uint64_t env_or(const char* name, std::uint64_t fallback, std::uint64_t least, std::uint64_t most);
/// A sim problem on this world: one EP rank per process, experts_per_rank experts on each, and
/// the run's domain size (domain_size()).
sim::problem problem_on_this_world(int max_tokens, int top_k, int experts_per_rank, sim::routing dist,
                                   std::uint64_t empty_ranks);
}  // namespace epgraph::mpitest
