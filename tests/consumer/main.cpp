// Plain host C++ (no nvcc): the public headers must compile without CUDA's compiler.
#include <cstdio>

#include "epgraph/comm/workspace_layout.hpp"
#include "epgraph/graph/step.hpp"

int main() {
  epgraph::comm::ep_config c;
  c.ep_size = 2;
  c.max_tokens_per_rank = 128;
  c.top_k = 8;
  c.num_experts = 256;
  c.hidden = 7168;
  c.payloads = {{"hidden", 7168 * 2}};
  const auto bytes = epgraph::comm::workspace_bytes_per_rank(c);
  std::printf("workspace bytes per rank: %zu\n", bytes);
  return bytes > 2 * 128 * 7168 * 2 ? 0 : 1;
}
