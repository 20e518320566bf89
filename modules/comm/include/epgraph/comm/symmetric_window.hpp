#pragma once
// Symmetric workspace: ncclMemAlloc memory registered as an NCCL_WIN_COLL_SYMMETRIC window.
// Collective: yes (every rank registers the same size, in the same order).
// Allocates: yes (cuMem memory via ncclMemAlloc). Capture-safe: no.
// Destruction deregisters the window, then frees the memory; it is local, so the owner
// must make sure no peer still accesses it (ep_session barriers first).

#include <nccl.h>

#include <cstddef>

#include "epgraph/comm/nccl_comm.hpp"

namespace epgraph::comm {

class symmetric_window {
 public:
  symmetric_window(nccl_comm_ref comm, std::size_t bytes);
  ~symmetric_window();
  symmetric_window(const symmetric_window&) = delete;
  symmetric_window& operator=(const symmetric_window&) = delete;
  symmetric_window(symmetric_window&& o) noexcept;
  symmetric_window& operator=(symmetric_window&&) = delete;

  /// This rank's memory (the ncclMemAlloc alias); host code and local kernels use it.
  void* local() const noexcept { return ptr_; }
  ncclWindow_t window() const noexcept { return window_; }
  std::size_t bytes() const noexcept { return bytes_; }

 private:
  ncclComm_t comm_ = nullptr;
  void* ptr_ = nullptr;
  ncclWindow_t window_ = nullptr;
  std::size_t bytes_ = 0;
};

}  // namespace epgraph::comm
