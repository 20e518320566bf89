#pragma once
// Regions laid out back to back, aligned, with overflow checks (the workspace and the
// expert-major buffers). Private to comm.
#include <cstddef>
#include <string>

#include "epgraph/comm/ep_config.hpp"
#include "epgraph/comm/error.hpp"
#include "epgraph/comm/workspace_layout.hpp"

namespace epgraph::comm::detail {

// Builds regions back to back with overflow checks; a failed check names what was asked.
class region_builder {
 public:
  explicit region_builder(const ep_config& config) : config_(config) {}

  region add(std::size_t a, std::size_t b, std::size_t c = 1, std::size_t d = 1) {
    std::size_t bytes = mul(mul(a, b), mul(c, d));
    std::size_t offset = align(cursor_);
    cursor_ = add_checked(offset, bytes);
    return {offset, bytes};
  }
  std::size_t total(std::size_t granularity) { return round_up(cursor_, granularity); }

 private:
  std::size_t mul(std::size_t a, std::size_t b) {
    std::size_t r;
    if (__builtin_mul_overflow(a, b, &r)) overflow();
    return r;
  }
  std::size_t add_checked(std::size_t a, std::size_t b) {
    std::size_t r;
    if (__builtin_add_overflow(a, b, &r)) overflow();
    return r;
  }
  std::size_t round_up(std::size_t v, std::size_t g) { return mul((add_checked(v, g - 1)) / g, g); }
  std::size_t align(std::size_t v) { return round_up(v, region_alignment); }
  [[noreturn]] void overflow() {
    throw_config_error("workspace",
                       "size overflows size_t (ep_size " + std::to_string(config_.ep_size) +
                           " x max_tokens_per_rank " + std::to_string(config_.max_tokens_per_rank) + ")",
                       "reduce max_tokens_per_rank, hidden or payload row sizes");
  }

  const ep_config& config_;
  std::size_t cursor_ = 0;
};

}  // namespace epgraph::comm::detail
