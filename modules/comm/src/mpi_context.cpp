#include "epgraph/comm/mpi_context.hpp"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <exception>
#include <string>
#include <thread>
#include <utility>

#include "epgraph/comm/error.hpp"
#include "epgraph/comm/mpi_error.hpp"

namespace epgraph::comm {
namespace {

void check_timeout(double timeout_seconds, const char* call) {
  if (!std::isfinite(timeout_seconds) || timeout_seconds <= 0)
    throw_config_error(call, "timeout is " + std::to_string(timeout_seconds) + " s", "use a finite number of seconds > 0");
}

// Tests `request` until it completes (true) or `timeout_seconds` pass (false, still pending).
bool wait_within(MPI_Request& request, double timeout_seconds) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_seconds);
  for (;;) {
    int done = 0;
    EPG_CHECK_MPI(MPI_Test(&request, &done, MPI_STATUS_IGNORE));
    if (done) return true;
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::microseconds(50));
  }
}

}  // namespace

void mpi_lifetime_traits::destroy(value_type& v) noexcept {
  int finalized = 0;
  if (MPI_Finalized(&finalized) != MPI_SUCCESS || finalized) return;
  if (v.side != MPI_COMM_NULL && MPI_Comm_free(&v.side) != MPI_SUCCESS)
    std::fprintf(stderr, "epgraph: MPI_Comm_free failed\n");
  if (v.owns_mpi && MPI_Finalize() != MPI_SUCCESS) std::fprintf(stderr, "epgraph: MPI_Finalize failed\n");
}

mpi_context::mpi_context(int* argc, char*** argv) : uncaught_at_creation_(std::uncaught_exceptions()) {
  mpi_lifetime_traits::value_type v;
  v.active = true;
  int initialized = 0, provided = 0;
  EPG_CHECK_MPI(MPI_Initialized(&initialized));
  if (!initialized) {
    EPG_CHECK_MPI(MPI_Init_thread(argc, argv, MPI_THREAD_SERIALIZED, &provided));
    v.owns_mpi = true;
  } else {
    EPG_CHECK_MPI(MPI_Query_thread(&provided));
  }
  lifetime_ = unique_handle<mpi_lifetime_traits>(v);  // finalized again if anything below throws
  if (provided < MPI_THREAD_FUNNELED)
    throw error(error_domain::mpi, "MPI_Init_thread", provided,
                "MPI provides thread level " + std::to_string(provided) +
                    " (MPI_THREAD_SINGLE), but CUDA and NCCL run threads of their own",
                "use an MPI built with thread support, or initialize MPI with MPI_Init_thread(MPI_THREAD_SERIALIZED)");
  EPG_CHECK_MPI(MPI_Comm_rank(MPI_COMM_WORLD, &rank_));
  EPG_CHECK_MPI(MPI_Comm_size(MPI_COMM_WORLD, &size_));
  MPI_Comm node = MPI_COMM_NULL;
  EPG_CHECK_MPI(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &node));
  EPG_CHECK_MPI(MPI_Comm_rank(node, &local_rank_));
  EPG_CHECK_MPI(MPI_Comm_size(node, &local_size_));
  EPG_CHECK_MPI(MPI_Comm_free(&node));
  MPI_Comm side = MPI_COMM_NULL;
  EPG_CHECK_MPI(MPI_Comm_dup(MPI_COMM_WORLD, &side));
  v.side = side;
  (void)lifetime_.release();
  lifetime_ = unique_handle<mpi_lifetime_traits>(v);
}

mpi_context::mpi_context(mpi_context&& other) noexcept
    : lifetime_(std::move(other.lifetime_)),
      uncaught_at_creation_(other.uncaught_at_creation_),
      pending_(std::exchange(other.pending_, MPI_REQUEST_NULL)),
      rank_(other.rank_),
      size_(other.size_),
      local_rank_(other.local_rank_),
      local_size_(other.local_size_) {}

mpi_context::~mpi_context() {
  if (!lifetime_) return;
  const bool unwinding = std::uncaught_exceptions() > uncaught_at_creation_;
  if (unwinding || pending_ != MPI_REQUEST_NULL) {
    if (lifetime_.get().owns_mpi)
      std::fprintf(stderr, "epgraph: rank %d skips MPI_Finalize (%s): it would wait for every rank\n", rank_,
                   unwinding ? "unwinding from an exception" : "a barrier_within never completed");
    (void)lifetime_.release();
  }
}

bool mpi_context::all_agree(bool ok) const {
  int mine = ok ? 1 : 0, all = 0;
  EPG_CHECK_MPI(MPI_Allreduce(&mine, &all, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD));
  return all == 1;
}

void mpi_context::barrier() const { EPG_CHECK_MPI(MPI_Barrier(MPI_COMM_WORLD)); }

bool mpi_context::barrier_within(double timeout_seconds) {
  check_timeout(timeout_seconds, "barrier_within");
  if (pending_ == MPI_REQUEST_NULL) EPG_CHECK_MPI(MPI_Ibarrier(MPI_COMM_WORLD, &pending_));
  return wait_within(pending_, timeout_seconds);  // completed requests become MPI_REQUEST_NULL
}

bool mpi_context::all_reach_within(double timeout_seconds) const {
  check_timeout(timeout_seconds, "all_reach_within");
  MPI_Request request = MPI_REQUEST_NULL;
  EPG_CHECK_MPI(MPI_Ibarrier(lifetime_.get().side, &request));
  return wait_within(request, timeout_seconds);  // an unfinished request is left to MPI_Abort
}

}  // namespace epgraph::comm
