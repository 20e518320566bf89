#pragma once
// Programmatic dependent launch (ep_config::programmatic_launch): the session's kernels are
// launched with CUDA's programmatic stream serialization, so a kernel's CTAs may be resident
// before the kernel ahead of it on the stream has finished, and the launch gap between the
// two is hidden (0.35 to 0.5 us per op at EP2, docs/perf-notes.md v37).
//
// Contract:
//  * Every kernel launched through launch_kernel() starts with after_previous_kernel(): no
//    memory access before it, so it sees everything the kernel ahead of it wrote, exactly as
//    with a plain launch (griddepcontrol.wait returns once that kernel has completed and its
//    writes are visible; in a plain launch it returns at once).
//  * after_previous_kernel() then lets the next kernel launch (griddepcontrol.launch_dependents)
//    when `programmatic`: that kernel waits for this one the same way before it touches memory.
//  * Capture-safe: a captured launch becomes a graph edge of the programmatic kind.
//  * Kernels launched plainly (stage_failed, quantize_rows) need nothing: a plain launch waits
//    for the kernel ahead of it as always, whether or not that one let it launch early.
#include <cuda_runtime.h>

#include <cstddef>

namespace epgraph::kernels {

namespace device {
/// First statement of every kernel launched by launch_kernel().
__device__ __forceinline__ void after_previous_kernel(bool programmatic) {
  asm volatile("griddepcontrol.wait;" ::: "memory");
  if (programmatic) asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
}
}  // namespace device

/// kernel<<<grid, block, shared, stream>>>(args...), with programmatic stream serialization
/// when `programmatic`. Returns the launch's status; never throws.
template <class... Params, class... Args>
cudaError_t launch_kernel(void (*kernel)(Params...), dim3 grid, dim3 block, std::size_t shared, cudaStream_t stream,
                          bool programmatic, Args&&... args) noexcept {
  cudaLaunchAttribute attribute{};
  attribute.id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attribute.val.programmaticStreamSerializationAllowed = 1;
  cudaLaunchConfig_t config{};
  config.gridDim = grid;
  config.blockDim = block;
  config.dynamicSmemBytes = shared;
  config.stream = stream;
  config.attrs = &attribute;
  config.numAttrs = programmatic ? 1 : 0;
  return cudaLaunchKernelEx(&config, kernel, static_cast<Args&&>(args)...);
}

}  // namespace epgraph::kernels
