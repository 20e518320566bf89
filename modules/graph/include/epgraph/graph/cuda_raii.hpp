#pragma once
// CUDA stream, event, graph and executable graph as owning / non-owning pairs with the
// names CCCL 3.1 uses (from_native_handle, release, get), so a later switch to
// cuda::stream is a rename. Constructors throw epgraph::comm::error; destructors never throw.
// None of these allocate GPU memory beyond what CUDA does for the handle itself.

#include <cuda_runtime_api.h>

#include <cstddef>

#include "epgraph/comm/cuda_handles.hpp"
#include "epgraph/comm/unique_handle.hpp"

namespace epgraph::graph {

/// Non-owning stream handle. Cheap to copy; capture-safe.
class stream_ref {
 public:
  constexpr stream_ref(cudaStream_t s = nullptr) noexcept : stream_(s) {}  // NOLINT: implicit by design
  constexpr cudaStream_t get() const noexcept { return stream_; }
  /// Blocks until all work on the stream finished; throws on error. Not capture-safe.
  void sync() const;
  /// True while the stream is being captured.
  bool is_capturing() const;

 private:
  cudaStream_t stream_;
};

/// Owning stream (non-blocking with respect to the legacy default stream).
class stream {
 public:
  stream();
  static stream from_native_handle(cudaStream_t s) noexcept { return stream(s); }
  cudaStream_t get() const noexcept { return handle_.get(); }
  [[nodiscard]] cudaStream_t release() noexcept { return handle_.release(); }
  operator stream_ref() const noexcept { return stream_ref(get()); }  // NOLINT
  void sync() const { stream_ref(get()).sync(); }

 private:
  explicit stream(cudaStream_t s) noexcept : handle_(s) {}
  comm::unique_handle<comm::stream_traits> handle_;
};

/// Owning event, timing-enabled by default.
class event {
 public:
  explicit event(bool timing = true);
  static event from_native_handle(cudaEvent_t e) noexcept { return event(e, 0); }
  cudaEvent_t get() const noexcept { return handle_.get(); }
  [[nodiscard]] cudaEvent_t release() noexcept { return handle_.release(); }
  /// Records on the stream; capture-safe (becomes an event-record node).
  void record(stream_ref s) const;
  void sync() const;
  /// Milliseconds between two recorded, completed events.
  static float elapsed_ms(const event& start, const event& stop);

 private:
  event(cudaEvent_t e, int) noexcept : handle_(e) {}
  comm::unique_handle<comm::event_traits> handle_;
};

/// Owning executable graph. launch() is capture-safe and never throws (it returns the status),
/// so it can run inside a caller's capture or behind a C boundary.
class graph_exec {
 public:
  graph_exec() = default;
  static graph_exec from_native_handle(cudaGraphExec_t g) noexcept { return graph_exec(g); }
  cudaGraphExec_t get() const noexcept { return handle_.get(); }
  [[nodiscard]] cudaGraphExec_t release() noexcept { return handle_.release(); }
  [[nodiscard]] cudaError_t launch(stream_ref s) const noexcept { return cudaGraphLaunch(get(), s.get()); }

 private:
  explicit graph_exec(cudaGraphExec_t g) noexcept : handle_(g) {}
  comm::unique_handle<comm::graph_exec_traits> handle_;
};

/// Owning graph (the captured template).
class graph {
 public:
  graph() = default;
  static graph from_native_handle(cudaGraph_t g) noexcept { return graph(g); }
  cudaGraph_t get() const noexcept { return handle_.get(); }
  [[nodiscard]] cudaGraph_t release() noexcept { return handle_.release(); }
  /// Instantiates an executable graph. Allocates; not capture-safe.
  graph_exec instantiate() const;
  /// Number of nodes (for tests and explain output).
  std::size_t node_count() const;

 private:
  explicit graph(cudaGraph_t g) noexcept : handle_(g) {}
  comm::unique_handle<comm::graph_traits> handle_;
};

/// Begins capture on `s` on construction; end() returns the graph. If destroyed without
/// end() (an exception escaped), the capture is ended and discarded so the stream is usable.
/// Uses thread-local capture mode, so other threads' unsafe calls are not affected.
class capture_scope {
 public:
  explicit capture_scope(stream_ref s);
  ~capture_scope();
  capture_scope(const capture_scope&) = delete;
  capture_scope& operator=(const capture_scope&) = delete;
  graph end();

 private:
  stream_ref stream_;
  bool active_ = false;
};

}  // namespace epgraph::graph
