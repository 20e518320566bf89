#include "epgraph/comm/select_device.hpp"

#include <cuda_runtime_api.h>

#include <string>

#include "epgraph/comm/error.hpp"

namespace epgraph::comm {

void select_device(int local_rank) {
  int count = 0;
  const cudaError_t got = cudaGetDeviceCount(&count);
  if (got != cudaSuccess || count == 0) {
    throw error(error_domain::cuda, "cudaGetDeviceCount", static_cast<int>(got),
                got == cudaSuccess ? "no CUDA device found" : cudaGetErrorString(got),
                "epgraph needs one NVIDIA GPU (sm_90) per rank");
  }
  if (local_rank < 0 || local_rank >= count) {
    throw error(error_domain::cuda, "select_device", static_cast<int>(cudaErrorInvalidDevice),
                "node-local rank " + std::to_string(local_rank) + " has no GPU: this node has " +
                    std::to_string(count) + " GPU(s)",
                "start at most one rank per GPU (mpirun -np <= " + std::to_string(count) + " per node)");
  }
  EPG_CHECK_CUDA(cudaSetDevice(local_rank));
}

}  // namespace epgraph::comm
