// A raw LSA-barrier kernel over a symmetric window, captured once and replayed 1000 times:
// every replay each CTA writes into every peer, barriers, and checks what its peers wrote.
#include <gtest/gtest.h>
#include <nccl.h>
#include <nccl_device.h>

#include "epgraph/comm/device_buffer.hpp"
#include "epgraph/comm/device_comm.hpp"
#include "epgraph/comm/error.hpp"
#include "epgraph/comm/symmetric_window.hpp"
#include "epgraph/graph/cuda_raii.hpp"
#include "world.hpp"

using namespace epgraph;

namespace {
__device__ int stamp(int iteration, int rank, int cta) { return iteration * 100000 + rank * 1000 + cta; }

// Slots [parity][src][cta]: double buffered by iteration parity, so a peer one replay
// ahead never overwrites what a slow rank still reads (it passed our next barrier first).
__global__ void exchange_kernel(const __grid_constant__ ncclDevComm dev, ncclWindow_t win, const int* iteration,
                                int* errors) {
  const int it = *iteration, n = dev.lsaSize, me = dev.lsaRank, b = blockIdx.x, G = gridDim.x;
  const std::size_t parity_base = static_cast<std::size_t>(it & 1) * n * G;
  for (int peer = threadIdx.x; peer < n; peer += blockDim.x) {
    int* slot = static_cast<int*>(ncclGetLsaPointer(win, sizeof(int) * (parity_base + me * G + b), peer));
    *slot = stamp(it, me, b);
  }
  ncclLsaBarrierSession<ncclCoopCta> bar(ncclCoopCta(), dev, ncclTeamLsa(dev), dev.lsaBarrier, b);
  bar.sync(ncclCoopCta(), cuda::memory_order_acq_rel);
  const int* mine = static_cast<const int*>(ncclGetLocalPointer(win, 0));
  for (int src = threadIdx.x; src < n; src += blockDim.x)
    if (mine[parity_base + src * G + b] != stamp(it, src, b)) atomicAdd(errors, 1);
}

__global__ void next_iteration(int* iteration) { ++*iteration; }
}  // namespace

TEST(LsaBarrier, CapturedGraphReplayedThousandTimesSeesEveryPeersData) {
  constexpr int ctas = 32, replays = 1000;
  comm::nccl_comm_ref comm = mpitest::world_comm();
  const int n = mpitest::mpi().size();
  comm::symmetric_window window(comm, 2 * sizeof(int) * n * ctas + 4096);
  comm::device_comm dev(comm, ctas);
  ASSERT_EQ(dev.lsa_size(), n);
  comm::device_buffer counters(2 * sizeof(int));
  EPG_CHECK_CUDA(cudaMemset(counters.get(), 0, 2 * sizeof(int)));
  EPG_CHECK_CUDA(cudaMemset(window.local(), 0xff, window.bytes()));
  EPG_CHECK_CUDA(cudaDeviceSynchronize());
  mpitest::mpi().barrier();

  int* iteration = counters.as<int>();
  int* errors = iteration + 1;
  graph::stream s;
  graph::capture_scope capture(s);
  exchange_kernel<<<ctas, 128, 0, s.get()>>>(dev.get(), window.window(), iteration, errors);
  next_iteration<<<1, 1, 0, s.get()>>>(iteration);
  graph::graph_exec exec = capture.end().instantiate();
  for (int r = 0; r < replays; ++r) ASSERT_EQ(exec.launch(s), cudaSuccess);
  s.sync();
  int host[2];
  EPG_CHECK_CUDA(cudaMemcpy(host, counters.get(), sizeof host, cudaMemcpyDeviceToHost));
  EXPECT_EQ(host[0], replays);
  EXPECT_EQ(host[1], 0) << "stale or missing peer data seen";
  mpitest::mpi().barrier();  // nobody deregisters while a peer may still write
}
