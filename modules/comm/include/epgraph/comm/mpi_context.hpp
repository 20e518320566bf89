#pragma once
// MPI context: initializes MPI only if this process has not already, finalizes only what it
// initialized. Construction is collective over MPI_COMM_WORLD (the node-local split).
// Allocates: no GPU memory. Capture-safe: not applicable (host only).
//
// Threads: it asks MPI for MPI_THREAD_SERIALIZED and refuses less than MPI_THREAD_FUNNELED
// (CUDA and NCCL run threads of their own; only the thread that created the context may call
// its methods).
//
// Part of epgraph's optional MPI part: target epgraph::mpi, find_package(epgraph COMPONENTS mpi).
// A runtime that brings its own communicator uses nccl_comm_ref and needs neither.

#if !__has_include(<mpi.h>)
#error "epgraph/comm/mpi_context.hpp needs MPI: link epgraph::mpi (find_package(epgraph COMPONENTS mpi)), which brings MPI's include directories; without MPI, pass your own ncclComm_t as nccl_comm_ref"
#endif

#include <mpi.h>

#include "epgraph/comm/mpi_error.hpp"
#include "epgraph/comm/nccl_comm.hpp"
#include "epgraph/comm/requires_cxx20.hpp"
#include "epgraph/comm/unique_handle.hpp"

namespace epgraph::comm {

/// A borrowed MPI communicator, as nccl_comm::bootstrap(mpi.world()) takes it.
class mpi_comm_ref {
 public:
  constexpr mpi_comm_ref(MPI_Comm comm) noexcept : comm_(comm) {}  // NOLINT: implicit by design
  MPI_Comm get() const noexcept { return comm_; }

 private:
  MPI_Comm comm_;
};

struct mpi_lifetime_traits {
  struct value_type {
    bool active = false;     ///< this object holds the context
    bool owns_mpi = false;   ///< this process's MPI_Init was ours: finalize it
    MPI_Comm side = MPI_COMM_NULL;  ///< private duplicate of the world (all_reach_within)
  };
  static bool empty(const value_type& v) noexcept { return !v.active; }
  static void destroy(value_type& v) noexcept;  // frees `side`; MPI_Finalize if owned
};

class mpi_context {
 public:
  mpi_context() : mpi_context(nullptr, nullptr) {}
  mpi_context(int* argc, char*** argv);
  /// Never blocks on peers while unwinding from an exception or with a barrier_within left
  /// unfinished: MPI_Finalize (which waits for every rank) is skipped then, and mpirun ends the
  /// job when this process exits.
  ~mpi_context();
  mpi_context(mpi_context&& other) noexcept;
  mpi_context& operator=(mpi_context&&) = delete;  // would finalize the target's MPI

  MPI_Comm world() const noexcept { return MPI_COMM_WORLD; }
  int rank() const noexcept { return rank_; }
  int size() const noexcept { return size_; }
  /// Rank among the processes of this node (shared-memory split); picks the GPU.
  int local_rank() const noexcept { return local_rank_; }
  int local_size() const noexcept { return local_size_; }

  /// Collective: MPI_Allreduce(min) of `ok`; true only if every rank passed `ok == true`.
  bool all_agree(bool ok) const;
  /// Collective: MPI_Barrier on the world communicator.
  void barrier() const;
  /// Collective: a barrier that gives up after `timeout_seconds` (> 0, finite) and returns
  /// false, so a stalled peer is diagnosed instead of hanging the host (MPI_Ibarrier + MPI_Test).
  /// After false the barrier stays pending: the next call resumes it (so it pairs with the
  /// same barrier of the late peers), and the destructor does not finalize.
  bool barrier_within(double timeout_seconds);
  /// Collective over a private duplicate of the world, so it never pairs with another
  /// collective of the application: true if every rank called it within `timeout_seconds`.
  /// For ending a job after an error: every rank failed together (finalize normally) or not
  /// (then abort, since healthy peers would wait).
  bool all_reach_within(double timeout_seconds) const;

 private:
  unique_handle<mpi_lifetime_traits> lifetime_;
  int uncaught_at_creation_ = 0;
  MPI_Request pending_ = MPI_REQUEST_NULL;
  int rank_ = 0, size_ = 1, local_rank_ = 0, local_size_ = 1;
};

}  // namespace epgraph::comm
