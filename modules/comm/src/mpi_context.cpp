#include "epgraph/comm/mpi_context.hpp"

#include <chrono>
#include <cstdio>
#include <thread>
#include <utility>

#include "epgraph/comm/error.hpp"

namespace epgraph::comm {

mpi_context::mpi_context(int* argc, char*** argv) {
  int initialized = 0;
  EPG_CHECK_MPI(MPI_Initialized(&initialized));
  if (!initialized) {
    int provided = 0;
    EPG_CHECK_MPI(MPI_Init_thread(argc, argv, MPI_THREAD_SERIALIZED, &provided));
    owns_mpi_ = true;
  }
  live_ = true;
  EPG_CHECK_MPI(MPI_Comm_rank(MPI_COMM_WORLD, &rank_));
  EPG_CHECK_MPI(MPI_Comm_size(MPI_COMM_WORLD, &size_));
  MPI_Comm node = MPI_COMM_NULL;
  EPG_CHECK_MPI(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &node));
  EPG_CHECK_MPI(MPI_Comm_rank(node, &local_rank_));
  EPG_CHECK_MPI(MPI_Comm_size(node, &local_size_));
  EPG_CHECK_MPI(MPI_Comm_free(&node));
}

mpi_context::~mpi_context() { reset(); }

void mpi_context::reset() noexcept {
  if (live_ && owns_mpi_) {
    int finalized = 0;
    if (MPI_Finalized(&finalized) != MPI_SUCCESS) {
      std::fprintf(stderr, "epgraph: MPI_Finalized failed; not finalizing MPI\n");
    } else if (!finalized && MPI_Finalize() != MPI_SUCCESS) {
      std::fprintf(stderr, "epgraph: MPI_Finalize failed\n");
    }
  }
  live_ = false;
  owns_mpi_ = false;
}

mpi_context::mpi_context(mpi_context&& o) noexcept
    : owns_mpi_(std::exchange(o.owns_mpi_, false)),
      live_(std::exchange(o.live_, false)),
      rank_(o.rank_),
      size_(o.size_),
      local_rank_(o.local_rank_),
      local_size_(o.local_size_) {}

mpi_context& mpi_context::operator=(mpi_context&& o) noexcept {
  if (this != &o) {
    reset();
    owns_mpi_ = std::exchange(o.owns_mpi_, false);
    live_ = std::exchange(o.live_, false);
    rank_ = o.rank_;
    size_ = o.size_;
    local_rank_ = o.local_rank_;
    local_size_ = o.local_size_;
  }
  return *this;
}

bool mpi_context::all_agree(bool ok) const {
  int mine = ok ? 1 : 0, all = 0;
  EPG_CHECK_MPI(MPI_Allreduce(&mine, &all, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD));
  return all == 1;
}

void mpi_context::barrier() const { EPG_CHECK_MPI(MPI_Barrier(MPI_COMM_WORLD)); }

bool mpi_context::barrier_within(double timeout_seconds) const {
  MPI_Request request = MPI_REQUEST_NULL;
  EPG_CHECK_MPI(MPI_Ibarrier(MPI_COMM_WORLD, &request));
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_seconds);
  for (;;) {
    int done = 0;
    EPG_CHECK_MPI(MPI_Test(&request, &done, MPI_STATUS_IGNORE));
    if (done) return true;
    if (timeout_seconds > 0 && std::chrono::steady_clock::now() > deadline) return false;  // request abandoned: abort next
    std::this_thread::sleep_for(std::chrono::microseconds(50));
  }
}

}  // namespace epgraph::comm
