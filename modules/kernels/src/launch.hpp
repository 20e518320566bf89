#pragma once
// Host entry points of the device code (implemented in the .cu files). Each only enqueues
// on `stream` (or queries) and returns the status: no allocation, no synchronization, no throw.
#include <cuda_runtime_api.h>

#include "epgraph/kernels/launch_params.hpp"
#include "epgraph/kernels/ops.hpp"

struct ncclDevComm;

namespace epgraph::kernels::detail {
/// SMs of the current device (throws on a CUDA error: planning only).
int sm_count();
/// Grid of the local (non-collective) kernels: two CTAs per SM of the current device.
int local_grid();
cudaError_t launch_dispatch(const ncclDevComm& dev, const dispatch_params& p, cudaStream_t stream) noexcept;
cudaError_t launch_combine(const ncclDevComm& dev, const combine_params& p, cudaStream_t stream) noexcept;
cudaError_t launch_summarize(const comm::session_view& v, bool sanitize, int grid, cudaStream_t stream) noexcept;
cudaError_t launch_prepare_combine(const comm::session_view& v, const void* source, bool vectorized,
                                   combine_precision precision, int grid, cudaStream_t stream) noexcept;
cudaError_t launch_quantize_rows(const quantize_rows_args& a, comm::fault_record* input, int grid,
                                 cudaStream_t stream) noexcept;
/// Records local_stage_failed (node position `node`) as this rank's fatal fault, if it has none.
cudaError_t launch_stage_failed(const comm::session_view& v, int node, cudaStream_t stream) noexcept;
/// The compiled attributes of the kernel a launch would run.
cudaError_t dispatch_attributes(cudaFuncAttributes* attributes) noexcept;
cudaError_t combine_attributes(const combine_params& p, cudaFuncAttributes* attributes) noexcept;
}  // namespace epgraph::kernels::detail
