#pragma once
// Host entry points of the device code (implemented in the .cu files). Each only enqueues
// on `stream` and returns the launch status: no allocation, no synchronization, no throw.
#include <cuda_runtime_api.h>

#include "epgraph/kernels/launch_params.hpp"

struct ncclDevComm;

namespace epgraph::kernels::detail {
cudaError_t launch_dispatch(const ncclDevComm& dev, const dispatch_params& p, cudaStream_t stream) noexcept;
cudaError_t launch_combine(const ncclDevComm& dev, const combine_params& p, cudaStream_t stream) noexcept;
cudaError_t launch_summarize(const comm::session_view& v, bool sanitize, int grid, cudaStream_t stream) noexcept;
cudaError_t launch_prepare_combine(const comm::session_view& v, const void* source, bool vectorized, int grid,
                                   cudaStream_t stream) noexcept;
}  // namespace epgraph::kernels::detail
