#pragma once
// What epg-demo and epg-bench share on the command line and at start-up.
#include <boost/program_options.hpp>
#include <cstdio>
#include <exception>
#include <optional>
#include <string>
#include <vector>

#include "epgraph/comm/mpi_context.hpp"
#include "epgraph/comm/nccl_comm.hpp"

namespace epgraph::cli {

/// Parses args against desc. Returns nullopt after rendering --help into *help; throws a
/// config error naming the bad option (and pointing at `<program> --help`) otherwise.
std::optional<boost::program_options::variables_map> parse(const boost::program_options::options_description& desc,
                                                           const std::vector<std::string>& args,
                                                           const std::string& program, std::string* help);

/// Collective. If every rank has a GPU of its own: selects it and returns the world's NCCL
/// communicator. Otherwise rank 0 prints what `program` needs and every rank gets nullopt.
std::optional<comm::nccl_comm> join_gpus(const comm::mpi_context& mpi, const std::string& program);

/// An app's main: runs `body`, and reports an escaping exception as "<program>: <what>"
/// with exit code 1.
template <class Body>
int guarded_main(const char* program, Body&& body) noexcept {
  try {
    return body();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: %s\n", program, e.what());
    return 1;
  }
}

}  // namespace epgraph::cli
