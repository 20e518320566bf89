#pragma once
// MPI context: initializes MPI only if this process has not already, finalizes only what
// it initialized. Construction is collective over MPI_COMM_WORLD (the node-local split).
// Allocates: no GPU memory. Capture-safe: not applicable (host only).

#include <mpi.h>

namespace epgraph::comm {

class mpi_context {
 public:
  mpi_context() : mpi_context(nullptr, nullptr) {}
  mpi_context(int* argc, char*** argv);
  ~mpi_context();

  mpi_context(const mpi_context&) = delete;
  mpi_context& operator=(const mpi_context&) = delete;
  mpi_context(mpi_context&& other) noexcept;
  mpi_context& operator=(mpi_context&& other) noexcept;

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
  /// Collective: a barrier that gives up after `timeout_seconds` (> 0) and returns false,
  /// so a stalled peer is diagnosed instead of hanging the host (MPI_Ibarrier + MPI_Test).
  bool barrier_within(double timeout_seconds) const;

 private:
  void reset() noexcept;
  bool owns_mpi_ = false;
  bool live_ = false;
  int rank_ = 0, size_ = 1, local_rank_ = 0, local_size_ = 1;
};

}  // namespace epgraph::comm
