#include "cli.hpp"

#include <cuda_runtime_api.h>

#include <cstdio>
#include <sstream>

#include "epgraph/comm/select_device.hpp"
#include "epgraph/comm/error.hpp"

namespace po = boost::program_options;

namespace epgraph::cli {

std::optional<po::variables_map> parse(const po::options_description& desc, const std::vector<std::string>& args,
                                       const std::string& program, std::string* help) {
  po::variables_map vm;
  std::vector<const char*> argv{program.c_str()};
  for (const auto& a : args) argv.push_back(a.c_str());
  try {
    po::store(po::parse_command_line(static_cast<int>(argv.size()), argv.data(), desc), vm);
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
