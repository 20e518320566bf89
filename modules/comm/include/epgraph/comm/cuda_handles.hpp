#pragma once
#include "epgraph/comm/requires_cxx20.hpp"
// unique_handle traits of the CUDA runtime objects epgraph owns: one home for each destroy
// call. Destroying reports a failure to stderr and never throws.

#include <cuda_runtime_api.h>

#include <cstddef>

namespace epgraph::comm {

namespace detail {
void report_cuda(cudaError_t code, const char* call) noexcept;
}  // namespace detail

namespace detail {
inline cudaError_t destroy_handle(cudaStream_t h) noexcept { return cudaStreamDestroy(h); }
inline cudaError_t destroy_handle(cudaEvent_t h) noexcept { return cudaEventDestroy(h); }
inline cudaError_t destroy_handle(cudaGraph_t h) noexcept { return cudaGraphDestroy(h); }
inline cudaError_t destroy_handle(cudaGraphExec_t h) noexcept { return cudaGraphExecDestroy(h); }
inline const char* destroy_call(cudaStream_t) noexcept { return "cudaStreamDestroy"; }
inline const char* destroy_call(cudaEvent_t) noexcept { return "cudaEventDestroy"; }
inline const char* destroy_call(cudaGraph_t) noexcept { return "cudaGraphDestroy"; }
inline const char* destroy_call(cudaGraphExec_t) noexcept { return "cudaGraphExecDestroy"; }
}  // namespace detail

/// Traits of a CUDA runtime handle (a pointer type; null is empty).
template <class Handle>
struct cuda_handle_traits {
  using value_type = Handle;
  static bool empty(Handle h) noexcept { return h == nullptr; }
  static void destroy(Handle h) noexcept { detail::report_cuda(detail::destroy_handle(h), detail::destroy_call(h)); }
};
using stream_traits = cuda_handle_traits<cudaStream_t>;
using event_traits = cuda_handle_traits<cudaEvent_t>;
using graph_traits = cuda_handle_traits<cudaGraph_t>;
using graph_exec_traits = cuda_handle_traits<cudaGraphExec_t>;

/// Device memory from cudaMalloc, with its size.
struct device_memory {
  void* ptr = nullptr;
  std::size_t bytes = 0;
};
struct device_memory_traits {
  using value_type = device_memory;
  static bool empty(const value_type& m) noexcept { return m.ptr == nullptr; }
  static void destroy(const value_type& m) noexcept { detail::report_cuda(cudaFree(m.ptr), "cudaFree"); }
};

}  // namespace epgraph::comm
