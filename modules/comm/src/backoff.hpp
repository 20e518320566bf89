#pragma once
// Host waits on the GPU or on peers: the polling pause, short at first (most waits end within
// microseconds), then backing off so a long wait does not spin a CPU core; and how a wait's
// length reads in messages.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <chrono>
#include <sstream>
#include <string>
#include <thread>

namespace epgraph::comm::detail {

class backoff {
 public:
  void pause() {
    std::this_thread::sleep_for(pause_);
    pause_ = std::min(pause_ * 2, std::chrono::microseconds(1000));
  }

 private:
  std::chrono::microseconds pause_{5};
};

/// After revoking the communicator whose collective runs on `stream`: true once the stream
/// is done (revoked NCCL kernels end at once; `limit` covers a busy GPU), false on an error
/// or when the limit passes first.
inline bool ends_within(cudaStream_t stream, std::chrono::seconds limit) noexcept {
  const auto start = std::chrono::steady_clock::now();
  for (backoff wait; std::chrono::steady_clock::now() - start < limit; wait.pause()) {
    const cudaError_t done = cudaStreamQuery(stream);
    if (done != cudaErrorNotReady) return done == cudaSuccess;
  }
  return false;
}

/// "6 s", "2.5 s": a wait in an error message.
inline std::string seconds_text(double s) {
  std::ostringstream out;
  out << s << " s";
  return out.str();
}

}  // namespace epgraph::comm::detail
