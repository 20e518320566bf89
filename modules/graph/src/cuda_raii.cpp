#include "epgraph/graph/cuda_raii.hpp"

#include "epgraph/comm/error.hpp"

namespace epgraph::graph {

void stream_ref::sync() const { EPG_CHECK_CUDA(cudaStreamSynchronize(stream_)); }

bool stream_ref::is_capturing() const {
  cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
  EPG_CHECK_CUDA(cudaStreamIsCapturing(stream_, &status));
  return status == cudaStreamCaptureStatusActive;
}

stream::stream() {
  cudaStream_t s = nullptr;
  EPG_CHECK_CUDA(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  handle_ = comm::unique_handle<comm::stream_traits>(s);
}

event::event(bool timing) {
  cudaEvent_t e = nullptr;
  EPG_CHECK_CUDA(cudaEventCreateWithFlags(&e, timing ? cudaEventDefault : cudaEventDisableTiming));
  handle_ = comm::unique_handle<comm::event_traits>(e);
}
void event::record(stream_ref s) const { EPG_CHECK_CUDA(cudaEventRecord(get(), s.get())); }
void event::sync() const { EPG_CHECK_CUDA(cudaEventSynchronize(get())); }
float event::elapsed_ms(const event& start, const event& stop) {
  float ms = 0.f;
  EPG_CHECK_CUDA(cudaEventElapsedTime(&ms, start.get(), stop.get()));
  return ms;
}

graph_exec graph::instantiate() const {
  cudaGraphExec_t exec = nullptr;
  EPG_CHECK_CUDA(cudaGraphInstantiateWithFlags(&exec, get(), 0));
  return graph_exec::from_native_handle(exec);
}

std::size_t graph::node_count() const {
  std::size_t n = 0;
  EPG_CHECK_CUDA(cudaGraphGetNodes(get(), nullptr, &n));
  return n;
}

capture_scope::capture_scope(stream_ref s) : stream_(s) {
  EPG_CHECK_CUDA(cudaStreamBeginCapture(s.get(), cudaStreamCaptureModeThreadLocal));
  active_ = true;
}

capture_scope::~capture_scope() {
  if (!active_) return;
  cudaGraph_t discarded = nullptr;
  EPG_REPORT_CUDA(cudaStreamEndCapture(stream_.get(), &discarded));
  if (discarded) EPG_REPORT_CUDA(cudaGraphDestroy(discarded));
  (void)cudaGetLastError();  // the failure was reported; don't let it surface in the next launch
}

graph capture_scope::end() {
  active_ = false;
  cudaGraph_t g = nullptr;
  EPG_CHECK_CUDA(cudaStreamEndCapture(stream_.get(), &g));
  return graph::from_native_handle(g);
}

}  // namespace epgraph::graph
