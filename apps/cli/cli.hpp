#pragma once
// What epg-demo and epg-bench share on the command line and at start-up.
#include <boost/program_options.hpp>
#include <optional>
#include <string>
#include <vector>

#include "epgraph/comm/mpi_context.hpp"

namespace epgraph::cli {

/// Parses args against desc. Returns nullopt after rendering --help into *help; throws a
/// config error naming the bad option (and pointing at `<program> --help`) otherwise.
std::optional<boost::program_options::variables_map> parse(const boost::program_options::options_description& desc,
                                                           const std::vector<std::string>& args,
                                                           const std::string& program, std::string* help);

/// Collective: true if every rank has a GPU of its own; otherwise rank 0 prints what
/// `program` needs and every rank gets false.
bool have_one_gpu_per_rank(const comm::mpi_context& mpi, const std::string& program);

}  // namespace epgraph::cli
