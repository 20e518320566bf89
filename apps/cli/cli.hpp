#pragma once
// What epg-demo and epg-bench share on the command line and at start-up.
#include <boost/program_options.hpp>
#include <cstdio>
#include <exception>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "epgraph/comm/mpi_context.hpp"
#include "epgraph/comm/nccl_comm.hpp"

namespace epgraph::cli {

/// Parses args (without the program name) against desc. Returns nullopt after rendering --help
/// into *help; throws a config error naming the bad option (and pointing at `<program> --help`)
/// otherwise, including for a stray word that belongs to no option (e.g. `--tokens 64 128`).
std::optional<boost::program_options::variables_map> parse(const boost::program_options::options_description& desc,
                                                           const std::vector<std::string>& args,
                                                           const std::string& program, std::string* help);

/// Collective, meant for option checks before any GPU work: runs check() on every rank. True
/// if it threw nowhere. Otherwise the lowest failing rank prints "<program>: <what>" to stderr
/// (once for the job, not once per rank) and every rank gets false.
bool passes_on_every_rank(const comm::mpi_context& mpi, const std::string& program,
                          const std::function<void()>& check);

/// Collective. If every rank has a GPU of its own: selects it and returns the world's NCCL
/// communicator. Otherwise rank 0 prints what `program` needs and every rank gets nullopt.
std::optional<comm::nccl_comm> join_gpus(const comm::mpi_context& mpi, const std::string& program);

/// Seconds a failed rank waits for the others to fail too before it aborts the job.
inline constexpr double failure_agreement_seconds = 10.0;

/// An MPI app's main: starts MPI, runs body(mpi, argc, argv) (the arguments MPI left) and
/// returns its exit code. An exception is
/// printed as "<program>: rank R: <what>" as soon as it reaches here (session teardown on
/// the way is local and never waits for peers). If every rank failed within
/// failure_agreement_seconds, all exit 1 normally; otherwise healthy peers would wait for
/// this rank, so it aborts the job (MPI_Abort) after printing.
template <class Body>
int mpi_main(int argc, char** argv, const char* program, Body&& body) noexcept {
  try {
    comm::mpi_context mpi(&argc, &argv);
    try {
      return body(mpi, argc, argv);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "%s: rank %d: %s\n", program, mpi.rank(), e.what());
      std::fflush(stderr);
      if (!mpi.all_reach_within(failure_agreement_seconds)) {
        std::fprintf(stderr, "%s: rank %d: the other ranks did not fail too; aborting the job\n", program, mpi.rank());
        MPI_Abort(MPI_COMM_WORLD, 1);
      }
      return 1;
    }
  } catch (const std::exception& e) {  // MPI itself did not start
    std::fprintf(stderr, "%s: %s\n", program, e.what());
    return 1;
  }
}

}  // namespace epgraph::cli
