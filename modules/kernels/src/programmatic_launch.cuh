#pragma once
// Programmatic dependent launch (ep_config::programmatic_launch): the session's kernels are
// launched with CUDA's programmatic stream serialization, so a kernel's CTAs may be resident
// before the kernel ahead of it on the stream has finished, and the launch gap between the
// two is hidden (0.2 to 0.7 us per dispatch or combine at EP2, docs/perf-notes.md v37).
//
// Contract:
//  * Every kernel launched through launch_kernel() starts with wait_for_previous_kernel(): no
//    memory access before it, so it sees everything the kernel ahead of it wrote, exactly as
//    with a plain launch (griddepcontrol.wait returns once that kernel has completed and its
//    writes are visible; in a plain launch it returns at once).
//  * It then lets the next kernel launch (griddepcontrol.launch_dependents) when
//    `programmatic`: the local kernels at once (after_previous_kernel), dispatch and combine
//    only after their last wait for a peer. A kernel released early sits on SMs until this one
//    ends; released while this one may wait up to the deadline for a peer, it would hold the
//    SMs that a leave or post kernel (comm/src/mailbox.cu, one warp beside the collective) and
//    other sessions' collectives count on.
//  * Capture-safe: a captured launch behind a kernel node becomes a programmatic edge (behind
//    a memset or another node kind, a plain one).
//  * Kernels launched plainly (stage_failed, quantize_rows) need nothing: a plain launch waits
//    for the kernel ahead of it as always, whether or not that one let it launch early.
#include <cuda_runtime.h>

#include <cstddef>

namespace epgraph::kernels {

namespace device {
/// First statement of every kernel launched by launch_kernel().
__device__ __forceinline__ void wait_for_previous_kernel() { asm volatile("griddepcontrol.wait;" ::: "memory"); }
/// The next kernel may launch once every CTA of this one called this (or ended).
__device__ __forceinline__ void let_next_kernel_launch(bool programmatic) {
  if (programmatic) asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
}
/// First statement of a local kernel (no waits on peers): both of the above.
__device__ __forceinline__ void after_previous_kernel(bool programmatic) {
  wait_for_previous_kernel();
  let_next_kernel_launch(programmatic);
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
  const cudaError_t st = cudaLaunchKernelEx(&config, kernel, static_cast<Args&&>(args)...);
  if (st != cudaSuccess) (void)cudaGetLastError();  // returned here; not left for the caller's next check
  return st;
}

}  // namespace epgraph::kernels
