// Probe (not a test; run by hand or by scripts/gpu-check.sh's "probe" stage): can a rank bound
// its wait when a peer never takes part in the first NCCL call on a communicator? NCCL connects
// lazily, inside that call, on the host. Two ranks; the last rank stays away for `away` seconds
// and then aborts its communicator. Each mode prints how long rank 0 waited and how it ended.
//
//   first_contact revoke-blocking   blocking communicator: another thread revokes it after 3 s
//                                   while the first all-gather waits for the connection
//   abort-nonblocking               non-blocking communicator (config.blocking = 0): the
//                                   all-gather returns ncclInProgress; after 3 s of polling
//                                   ncclCommGetAsyncError, rank 0 aborts it
//   revoke-nonblocking              the same, but revoking (the handle stays valid)
//
// A watchdog ends the process after 40 s, so a mode that hangs says so instead of holding the
// machine.
#include <cuda_runtime_api.h>
#include <mpi.h>
#include <nccl.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>

namespace {

using clock_type = std::chrono::steady_clock;
double since(clock_type::time_point t) { return std::chrono::duration<double>(clock_type::now() - t).count(); }

void check(ncclResult_t r, const char* what) {
  if (r != ncclSuccess && r != ncclInProgress) {
    std::fprintf(stderr, "%s: %s\n", what, ncclGetErrorString(r));
    std::exit(2);
  }
}

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank = 0, size = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  const std::string mode = argc > 1 ? argv[1] : "revoke-blocking";
  const int away = size - 1;
  std::thread([rank] {
    std::this_thread::sleep_for(std::chrono::seconds(40));
    std::printf("probe rank %d: HUNG (watchdog after 40 s)\n", rank);
    std::fflush(stdout);
    std::_Exit(3);
  }).detach();
  cudaSetDevice(rank);
  ncclUniqueId id;
  if (rank == 0) check(ncclGetUniqueId(&id), "ncclGetUniqueId");
  MPI_Bcast(&id, sizeof id, MPI_BYTE, 0, MPI_COMM_WORLD);
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = mode == "revoke-blocking" ? 1 : 0;
  ncclComm_t comm = nullptr;
  check(ncclCommInitRankConfig(&comm, size, id, rank, &config), "ncclCommInitRankConfig");
  for (ncclResult_t state = ncclInProgress; state == ncclInProgress;) check(ncclCommGetAsyncError(comm, &state), "init");
  MPI_Barrier(MPI_COMM_WORLD);  // every rank's communicator exists; no collective has run on it
  void* buffer = nullptr;
  cudaMalloc(&buffer, 1 << 20);
  cudaStream_t stream;
  cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking);
  if (rank == away) {
    std::this_thread::sleep_for(std::chrono::seconds(20));
    ncclCommAbort(comm);
    std::printf("probe rank %d (%s): stayed away 20 s, aborted\n", rank, mode.c_str());
  } else {
    const auto start = clock_type::now();
    std::thread revoker;
    if (mode == "revoke-blocking")
      revoker = std::thread([&] {
        std::this_thread::sleep_for(std::chrono::seconds(3));
        const ncclResult_t r = ncclCommRevoke(comm, NCCL_REVOKE_DEFAULT);
        std::printf("probe rank %d: revoke from another thread at %.2f s returned %s\n", rank, since(start),
                    ncclGetErrorString(r));
        std::fflush(stdout);
      });
    const ncclResult_t gathered = ncclAllGather(buffer, static_cast<char*>(buffer) + 64, 8, ncclUint8, comm, stream);
    std::printf("probe rank %d (%s): ncclAllGather returned %s after %.2f s\n", rank, mode.c_str(),
                ncclGetErrorString(gathered), since(start));
    std::fflush(stdout);
    if (mode != "revoke-blocking") {
      ncclResult_t state = ncclInProgress;
      while (state == ncclInProgress && since(start) < 3) ncclCommGetAsyncError(comm, &state);
      std::printf("probe rank %d: async state after polling %.2f s: %s\n", rank, since(start), ncclGetErrorString(state));
      std::fflush(stdout);
      const auto t = clock_type::now();
      const ncclResult_t ended = mode == "abort-nonblocking" ? ncclCommAbort(comm) : ncclCommRevoke(comm, NCCL_REVOKE_DEFAULT);
      std::printf("probe rank %d: %s returned %s after %.2f s\n", rank, mode == "abort-nonblocking" ? "abort" : "revoke",
                  ncclGetErrorString(ended), since(t));
      std::fflush(stdout);
      if (mode == "revoke-nonblocking") {
        ncclResult_t after = ncclInProgress;
        while (after == ncclInProgress && since(t) < 10) ncclCommGetAsyncError(comm, &after);
        std::printf("probe rank %d: after revoking, state %s at %.2f s\n", rank, ncclGetErrorString(after), since(t));
      }
    } else {
      revoker.join();
      const cudaError_t q = cudaStreamQuery(stream);
      std::printf("probe rank %d: stream %s\n", rank, cudaGetErrorString(q));
    }
    std::printf("probe rank %d (%s): ended after %.2f s\n", rank, mode.c_str(), since(start));
  }
  std::fflush(stdout);
  std::_Exit(0);  // skip teardown: the communicators are in no state to be destroyed collectively
}
