#pragma once
// Polling pause for host waits on the GPU or on peers: short at first (most waits end within
// microseconds), then backing off so a long wait does not spin a CPU core.
#include <algorithm>
#include <chrono>
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

}  // namespace epgraph::comm::detail
