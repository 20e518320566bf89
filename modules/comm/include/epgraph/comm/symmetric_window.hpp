#pragma once
// Symmetric workspace in two steps, so that a local failure can be agreed on before the
// collective step starts (a rank that fails alone inside a collective hangs the others):
//
//   symmetric_memory   ncclMemAlloc'ed memory.
//                      Collective: no. Allocates: yes (cuMem memory). Capture-safe: no.
//   symmetric_window   that memory registered as an NCCL_WIN_COLL_SYMMETRIC window.
//                      Collective: yes (every rank registers the same size, in the same order).
//                      Allocates: NCCL's window state. Capture-safe: no.
//
// Destroying a window deregisters it, then frees the memory. Both are local, so the owner
// must make sure no peer still accesses it (ep_session barriers first).

#include <nccl.h>

#include <cstddef>

#include "epgraph/comm/nccl_comm.hpp"

namespace epgraph::comm {

class symmetric_memory {
 public:
  symmetric_memory() = default;
  explicit symmetric_memory(std::size_t bytes);
  ~symmetric_memory();
  symmetric_memory(const symmetric_memory&) = delete;
  symmetric_memory& operator=(const symmetric_memory&) = delete;
  symmetric_memory(symmetric_memory&& o) noexcept;
  symmetric_memory& operator=(symmetric_memory&& o) noexcept;

  void* get() const noexcept { return ptr_; }
  std::size_t bytes() const noexcept { return bytes_; }
  /// Gives up ownership; the caller frees the pointer with ncclMemFree.
  void* release() noexcept;

 private:
  void* ptr_ = nullptr;
  std::size_t bytes_ = 0;
};

class symmetric_window {
 public:
  /// Registers `memory` (collective). On failure the memory is freed and an error thrown.
  symmetric_window(nccl_comm_ref comm, symmetric_memory memory);
  /// Allocates and registers in one go: only when no rank can fail alone in between.
  symmetric_window(nccl_comm_ref comm, std::size_t bytes) : symmetric_window(comm, symmetric_memory(bytes)) {}
  ~symmetric_window();
  symmetric_window(const symmetric_window&) = delete;
  symmetric_window& operator=(const symmetric_window&) = delete;
  symmetric_window(symmetric_window&& o) noexcept;
  symmetric_window& operator=(symmetric_window&&) = delete;

  /// This rank's memory (the ncclMemAlloc alias); host code and local kernels use it.
  void* local() const noexcept { return memory_.get(); }
  ncclWindow_t window() const noexcept { return window_; }
  std::size_t bytes() const noexcept { return memory_.bytes(); }

 private:
  ncclComm_t comm_ = nullptr;
  symmetric_memory memory_;  // freed after ~symmetric_window's body deregistered the window
  ncclWindow_t window_ = nullptr;
};

}  // namespace epgraph::comm
