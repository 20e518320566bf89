#pragma once
// unique_handle traits of the CUDA runtime objects epgraph owns: one home for each destroy
// call. Destroying reports a failure to stderr and never throws.

#include <cuda_runtime_api.h>

#include <cstddef>

namespace epgraph::comm {

namespace detail {
void report_cuda(cudaError_t code, const char* call) noexcept;
}  // namespace detail

struct stream_traits {
  using value_type = cudaStream_t;
  static bool empty(value_type s) noexcept { return s == nullptr; }
  static void destroy(value_type s) noexcept { detail::report_cuda(cudaStreamDestroy(s), "cudaStreamDestroy"); }
};

struct event_traits {
  using value_type = cudaEvent_t;
  static bool empty(value_type e) noexcept { return e == nullptr; }
  static void destroy(value_type e) noexcept { detail::report_cuda(cudaEventDestroy(e), "cudaEventDestroy"); }
};

struct graph_traits {
  using value_type = cudaGraph_t;
  static bool empty(value_type g) noexcept { return g == nullptr; }
  static void destroy(value_type g) noexcept { detail::report_cuda(cudaGraphDestroy(g), "cudaGraphDestroy"); }
};

struct graph_exec_traits {
  using value_type = cudaGraphExec_t;
  static bool empty(value_type g) noexcept { return g == nullptr; }
  static void destroy(value_type g) noexcept { detail::report_cuda(cudaGraphExecDestroy(g), "cudaGraphExecDestroy"); }
};

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
