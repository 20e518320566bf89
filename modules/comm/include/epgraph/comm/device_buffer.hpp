#pragma once
// Owning plain device memory (cudaMalloc). Allocates: yes. Collective: no.
// Capture-safe: no (allocate before capture).

#include <cstddef>
#include <utility>

namespace epgraph::comm {

class device_buffer {
 public:
  device_buffer() = default;
  explicit device_buffer(std::size_t bytes);
  ~device_buffer();
  device_buffer(const device_buffer&) = delete;
  device_buffer& operator=(const device_buffer&) = delete;
  device_buffer(device_buffer&& o) noexcept : ptr_(std::exchange(o.ptr_, nullptr)), bytes_(std::exchange(o.bytes_, 0)) {}
  device_buffer& operator=(device_buffer&& o) noexcept {
    device_buffer tmp(std::move(o));
    std::swap(ptr_, tmp.ptr_);
    std::swap(bytes_, tmp.bytes_);
    return *this;
  }

  void* get() const noexcept { return ptr_; }
  template <class T>
  T* as() const noexcept { return static_cast<T*>(ptr_); }
  std::size_t bytes() const noexcept { return bytes_; }

 private:
  void* ptr_ = nullptr;
  std::size_t bytes_ = 0;
};

}  // namespace epgraph::comm
