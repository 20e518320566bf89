#pragma once
// Owning plain device memory (cudaMalloc). Allocates: yes. Collective: no.
// Capture-safe: no (allocate before capture).

#include <cstddef>

#include "epgraph/comm/cuda_handles.hpp"
#include "epgraph/comm/unique_handle.hpp"

namespace epgraph::comm {

class device_buffer {
 public:
  device_buffer() = default;
  explicit device_buffer(std::size_t bytes);

  void* get() const noexcept { return memory_.get().ptr; }
  template <class T>
  T* as() const noexcept {
    return static_cast<T*>(get());
  }
  std::size_t bytes() const noexcept { return memory_.get().bytes; }
  /// Gives up ownership: the caller frees the memory with cudaFree.
  [[nodiscard]] device_memory release() noexcept { return memory_.release(); }

 private:
  unique_handle<device_memory_traits> memory_;
};

}  // namespace epgraph::comm
