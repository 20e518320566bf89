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
// must make sure no peer still accesses it (ep_session agrees on teardown first).

#include <nccl.h>

#include <cstddef>
#include <utility>

#include "epgraph/comm/nccl_comm.hpp"
#include "epgraph/comm/unique_handle.hpp"

namespace epgraph::comm {

struct symmetric_memory_traits {
  struct value_type {
    void* ptr = nullptr;
    std::size_t bytes = 0;
  };
  static bool empty(const value_type& m) noexcept { return m.ptr == nullptr; }
  static void destroy(const value_type& m) noexcept;  // ncclMemFree
};

class symmetric_memory {
 public:
  symmetric_memory() = default;
  explicit symmetric_memory(std::size_t bytes);

  void* get() const noexcept { return memory_.get().ptr; }
  std::size_t bytes() const noexcept { return memory_.get().bytes; }
  /// Gives up ownership; the caller frees the pointer with ncclMemFree.
  [[nodiscard]] void* release() noexcept { return memory_.release().ptr; }

 private:
  unique_handle<symmetric_memory_traits> memory_;
};

struct window_registration_traits {
  struct value_type {
    ncclComm_t comm = nullptr;
    ncclWindow_t window = nullptr;
  };
  static bool empty(const value_type& r) noexcept { return r.window == nullptr; }
  static void destroy(const value_type& r) noexcept;  // ncclCommWindowDeregister
};

class symmetric_window {
 public:
  symmetric_window() = default;
  /// Registers `memory` (collective). On failure the memory is freed and an error thrown.
  symmetric_window(nccl_comm_ref comm, symmetric_memory memory);
  /// Allocates and registers in one go: only when no rank can fail alone in between.
  symmetric_window(nccl_comm_ref comm, std::size_t bytes) : symmetric_window(comm, symmetric_memory(bytes)) {}
  symmetric_window(symmetric_window&&) noexcept = default;
  /// Drops this window's registration before its memory, as destruction does.
  symmetric_window& operator=(symmetric_window&& other) noexcept {
    if (this != &other) {
      registration_.reset();
      memory_ = std::move(other.memory_);
      registration_ = std::move(other.registration_);
    }
    return *this;
  }

  /// This rank's memory (the ncclMemAlloc alias); host code and local kernels use it.
  void* local() const noexcept { return memory_.get(); }
  ncclWindow_t window() const noexcept { return registration_.get().window; }
  std::size_t bytes() const noexcept { return memory_.bytes(); }
  /// Gives up the registration and the memory without releasing them (after a setup
  /// collective never finished, freeing would wait for it forever).
  void leak() noexcept;

 private:
  symmetric_memory memory_;  // declared first: freed after the registration is dropped
  unique_handle<window_registration_traits> registration_;
};

}  // namespace epgraph::comm
