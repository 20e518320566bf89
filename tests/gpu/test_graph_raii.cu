// Single GPU: stream/event/graph RAII, capture and replay of a kernel.
#include <gtest/gtest.h>

#include "epgraph/comm/device_buffer.hpp"
#include "epgraph/comm/error.hpp"
#include "epgraph/graph/cuda_raii.hpp"

using namespace epgraph;

namespace {
bool have_gpu() {
  int n = 0;
  return cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
}
#define REQUIRE_GPU() \
  if (!have_gpu()) GTEST_SKIP() << "no CUDA GPU on this machine"

__global__ void add_step(int* data, int n, int* counter) {
  const int step = *counter;
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) data[i] += i + step;
}
__global__ void bump(int* counter) { ++*counter; }
}  // namespace

TEST(GraphRaii, CaptureOnceReplayManyMatchesHostModel) {
  REQUIRE_GPU();
  constexpr int n = 1000, replays = 50;
  comm::device_buffer data(n * sizeof(int)), counter(sizeof(int));
  EPG_CHECK_CUDA(cudaMemset(data.get(), 0, n * sizeof(int)));
  EPG_CHECK_CUDA(cudaMemset(counter.get(), 0, sizeof(int)));
  graph::stream s;
  graph::capture_scope capture(s);
  EXPECT_TRUE(graph::stream_ref(s).is_capturing());
  add_step<<<4, 128, 0, s.get()>>>(data.as<int>(), n, counter.as<int>());
  bump<<<1, 1, 0, s.get()>>>(counter.as<int>());
  graph::graph g = capture.end();
  EXPECT_FALSE(graph::stream_ref(s).is_capturing());
  EXPECT_EQ(g.node_count(), 2u);
  graph::graph_exec exec = g.instantiate();
  for (int r = 0; r < replays; ++r) ASSERT_EQ(exec.launch(s), cudaSuccess);
  s.sync();
  std::vector<int> host(n);
  EPG_CHECK_CUDA(cudaMemcpy(host.data(), data.get(), n * sizeof(int), cudaMemcpyDeviceToHost));
  const int step_sum = replays * (replays - 1) / 2;
  for (int i = 0; i < n; ++i) ASSERT_EQ(host[i], replays * i + step_sum) << i;
}

TEST(GraphRaii, AbandonedCaptureLeavesTheStreamUsable) {
  REQUIRE_GPU();
  graph::stream s;
  {
    graph::capture_scope capture(s);
    bump<<<1, 1, 0, s.get()>>>(nullptr);  // never runs: the capture is discarded
  }
  EXPECT_FALSE(graph::stream_ref(s).is_capturing());
  EXPECT_NO_THROW(s.sync());
}

TEST(GraphRaii, EventsTimeWork) {
  REQUIRE_GPU();
  graph::stream s;
  graph::event a, b;
  comm::device_buffer counter(sizeof(int));
  a.record(s);
  for (int i = 0; i < 10; ++i) bump<<<1, 1, 0, s.get()>>>(counter.as<int>());
  b.record(s);
  b.sync();
  EXPECT_GE(graph::event::elapsed_ms(a, b), 0.f);
}

TEST(GraphRaii, ReleaseHandsOwnershipBack) {
  REQUIRE_GPU();
  graph::stream s;
  cudaStream_t raw = s.release();
  EXPECT_EQ(s.get(), nullptr);
  graph::stream again = graph::stream::from_native_handle(raw);  // owns and destroys it
  EXPECT_EQ(again.get(), raw);
}
