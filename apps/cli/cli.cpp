#include "cli.hpp"

#include <cuda_runtime_api.h>

#include <cstdio>
#include <functional>
#include <sstream>

#include "epgraph/comm/select_device.hpp"
#include "epgraph/comm/error.hpp"

namespace po = boost::program_options;

namespace epgraph::cli {

std::optional<po::variables_map> parse(const po::options_description& desc, const std::vector<std::string>& args,
                                       const std::string& program, std::string* help) {
  po::variables_map vm;
  try {
    const po::parsed_options parsed = po::command_line_parser(args).options(desc).run();
    // Boost keeps a word that belongs to no option as a positional entry and store() drops it
    // silently, so `--tokens 64 128` would run with 64: reject it instead.
    for (const auto& option : parsed.options)
      if (option.position_key >= 0 || option.string_key.empty()) {
        const std::string word = option.original_tokens.empty() ? std::string() : option.original_tokens.front();
        comm::throw_config_error("command line", "has a stray argument '" + word + "' that belongs to no option",
                                 "every word must be an option (--name) or the one value that follows it; see " +
                                     program + " --help");
      }
    po::store(parsed, vm);
    po::notify(vm);
  } catch (const po::error& e) {
    comm::throw_config_error("command line", e.what(), "see " + program + " --help");
  }
  if (vm.count("help")) {
    std::ostringstream out;
    out << desc;
    if (help) *help = out.str();
    return std::nullopt;
  }
  return vm;
}

bool passes_on_every_rank(const comm::mpi_context& mpi, const std::string& program,
                          const std::function<void()>& check) {
  std::string failure;
  try {
    check();
  } catch (const std::exception& e) {
    failure = e.what();
  }
  // The lowest failing rank speaks for all: option checks see the same arguments everywhere,
  // so one line instead of one per rank.
  int mine = failure.empty() ? mpi.size() : mpi.rank(), first = 0, mine_failed = failure.empty() ? 0 : 1, failed = 0;
  EPG_CHECK_MPI(MPI_Allreduce(&mine, &first, 1, MPI_INT, MPI_MIN, mpi.world()));
  EPG_CHECK_MPI(MPI_Allreduce(&mine_failed, &failed, 1, MPI_INT, MPI_SUM, mpi.world()));
  if (first == mpi.size()) return true;
  if (mpi.rank() == first) {
    if (failed == mpi.size())
      std::fprintf(stderr, "%s: %s\n", program.c_str(), failure.c_str());
    else  // ranks were started with different arguments (MPMD): say which failed
      std::fprintf(stderr, "%s: rank %d (one of %d failing ranks of %d): %s\n", program.c_str(), mpi.rank(), failed,
                   mpi.size(), failure.c_str());
    std::fflush(stderr);
  }
  return false;
}

std::optional<comm::nccl_comm> join_gpus(const comm::mpi_context& mpi, const std::string& program) {
  int gpus = 0;
  if (cudaGetDeviceCount(&gpus) != cudaSuccess) gpus = 0;
  if (!mpi.all_agree(gpus >= mpi.local_size())) {
    if (mpi.rank() == 0)
      std::fprintf(stderr,
                   "%s needs one NVIDIA GPU (Hopper, sm_90) per rank in one NVLink domain: %d rank(s) on this node, "
                   "%d GPU(s) visible. Run it on a GPU machine: mpirun -np <gpus> %s\n",
                   program.c_str(), mpi.local_size(), gpus, program.c_str());
    return std::nullopt;
  }
  comm::select_device(mpi.local_rank());
  return comm::nccl_comm::bootstrap(mpi.world());
}

}  // namespace epgraph::cli
