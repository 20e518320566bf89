// Fuzz target for config validation and workspace layout, built with ASan + UBSan.
// Property: every config is either rejected with a config error that names a field, or
// yields a layout whose regions are aligned, disjoint, inside their buffer, and exactly as
// large as the (overflow-free, 128-bit) product of their dimensions.
//
//   epgraph_fuzz_layout [iterations] [seed]
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "epgraph/comm/error.hpp"
#include "epgraph/comm/faults.hpp"
#include "epgraph/comm/workspace_layout.hpp"

using namespace epgraph::comm;
using u128 = unsigned __int128;

namespace {
int failures = 0;
void fail(const std::string& what) {
  if (++failures <= 10) std::fprintf(stderr, "fuzz failure: %s\n", what.c_str());
}

// Mostly edge values, sometimes anything.
long long pick(std::mt19937_64& rng, long long lo, long long hi) {
  const long long edges[] = {lo - 1, lo, lo + 1, hi - 1, hi, hi + 1, 0, -1, 1LL << 31, -(1LL << 40)};
  if (rng() % 16 == 0) return edges[rng() % 10];
  return lo + static_cast<long long>(rng() % static_cast<unsigned long long>(hi - lo + 1));
}

int as_int(long long v) { return static_cast<int>(std::max<long long>(-(1LL << 31), std::min<long long>(v, (1LL << 31) - 1))); }

void check_region(const region& r, u128 want, std::size_t limit, const char* name, std::vector<region>& seen) {
  if (r.offset % region_alignment != 0) fail(std::string(name) + " misaligned");
  if (u128(r.bytes) != want) fail(std::string(name) + " has the wrong size");
  if (u128(r.offset) + r.bytes > limit) fail(std::string(name) + " ends outside its buffer");
  for (const auto& o : seen)
    if (r.bytes && o.bytes && r.offset < o.end() && o.offset < r.end()) fail(std::string(name) + " overlaps");
  seen.push_back(r);
}
}  // namespace

int main(int argc, char** argv) {
  const long iterations = argc > 1 ? std::atol(argv[1]) : 200000;
  std::mt19937_64 rng(argc > 2 ? std::strtoull(argv[2], nullptr, 10) : 20261126);
  long accepted = 0, rejected = 0;
  for (long it = 0; it < iterations; ++it) {
    ep_config c;
    c.ep_size = as_int(pick(rng, 1, max_ep_size));
    c.max_tokens_per_rank = as_int(pick(rng, 1, max_tokens_limit));
    c.top_k = as_int(pick(rng, 1, max_top_k));
    c.num_experts = as_int(c.ep_size > 0 && rng() % 2 ? static_cast<long long>(c.ep_size) * as_int(pick(rng, 1, 64))
                                                    : pick(rng, 1, 1 << 20));
    c.hidden = as_int(pick(rng, 1, 1 << 18));
    c.combine_type = static_cast<element_type>(rng() % 4);  // 3 is not a valid type
    const long long payloads = pick(rng, 0, max_payloads);
    for (long long i = 0; i < std::min<long long>(std::max<long long>(payloads, 0), 12); ++i)
      c.payloads.push_back({"p", static_cast<std::size_t>(pick(rng, 1, static_cast<long long>(max_row_bytes)))});
    c.num_ctas = as_int(pick(rng, 1, max_num_ctas));
    c.threads_per_cta = as_int(rng() % 4 ? 32 * pick(rng, 2, max_threads_per_cta / 32) : pick(rng, 64, max_threads_per_cta));
    const double deadlines[] = {30.0, 0.0, 0.5, max_deadline_seconds, -1.0, max_deadline_seconds * 2,
                                std::numeric_limits<double>::quiet_NaN(), std::numeric_limits<double>::infinity()};
    c.deadline_seconds = rng() % 8 ? 30.0 : deadlines[rng() % 8];
    c.domain_size = rng() % 2 ? 0 : as_int(pick(rng, 1, std::max(1, c.ep_size)));  // divisors or not
    try {
      const workspace_layout l = plan_workspace(c);
      ++accepted;
      const u128 ep = c.ep_size, tokens = c.max_tokens_per_rank;
      const u128 L = c.ranks_per_domain(), R = ep - L;
      if (c.domain_size != 0 && (c.domain_size < 0 || c.ep_size % c.domain_size != 0)) fail("domain_size accepted");
      std::vector<region> window, local;
      check_region(l.counts, ep * 4, l.window_bytes, "counts", window);
      check_region(l.arrivals, L * u128(c.num_ctas) * 8, l.window_bytes, "arrivals", window);
      check_region(l.mailbox, 3 * ep * mailbox_slot_bytes, l.window_bytes, "mailbox", window);
      check_region(l.topk_ids, ep * tokens * c.top_k * 4, l.window_bytes, "topk_ids", window);
      if (static_cast<std::size_t>(l.num_payloads) != c.payloads.size()) fail("payload count");
      for (std::size_t i = 0; i < c.payloads.size(); ++i)
        check_region(l.payloads[i], ep * tokens * c.payloads[i].row_bytes, l.window_bytes, "payload", window);
      check_region(l.combine, ep * tokens * u128(c.hidden) * element_size(c.combine_type), l.window_bytes, "combine",
                   window);
      if (l.window_bytes % window_granularity) fail("window granularity");
      check_region(l.token_slots, tokens * ep * 4, l.local_bytes, "token_slots", local);
      check_region(l.lookback, u128(c.num_ctas) * ep * 8, l.local_bytes, "lookback", local);
      check_region(l.launches, u128(c.num_ctas) * launch_word_stride, l.local_bytes, "launches", local);
      check_region(l.push_claims, u128(c.num_ctas) * launch_word_stride, l.local_bytes, "push_claims", local);
      check_region(l.dispatched, 4, l.local_bytes, "dispatched", local);
      check_region(l.faults, sizeof(device_faults), l.local_bytes, "faults", local);
      check_region(l.dispatch_word, 8, l.local_bytes, "dispatch_word", local);
      check_region(l.expert_counts, u128(c.num_experts / c.ep_size) * 4, l.local_bytes, "expert_counts", local);
      check_region(l.expert_load, (u128(c.num_experts / c.ep_size) + 1) * 8, l.local_bytes, "expert_load", local);
      std::vector<region> far;
      check_region(l.staged_topk_ids, R * tokens * c.top_k * 4, l.remote_bytes, "staged_topk_ids", far);
      for (std::size_t i = 0; i < c.payloads.size(); ++i)
        check_region(l.staged_payloads[i], R * tokens * c.payloads[i].row_bytes, l.remote_bytes, "staged payload", far);
      check_region(l.staged_counts, R * 4, l.remote_bytes, "staged_counts", far);
      check_region(l.remote_words, 2 * R * 8, l.remote_bytes, "remote_words", far);
      check_region(l.combine_mark, R ? 8 : 0, l.remote_bytes, "combine_mark", far);
      check_region(l.combine_started, R ? 8 : 0, l.remote_bytes, "combine_started", far);
      check_region(l.combines_done, R ? 8 : 0, l.remote_bytes, "combines_done", far);
      check_region(l.dispatch_done, R ? 8 : 0, l.remote_bytes, "dispatch_done", far);
      check_region(l.remote_partials, R * tokens * u128(c.hidden) * element_size(c.combine_type), l.remote_bytes,
                   "remote_partials", far);
      if ((R == 0) != (l.remote_bytes == 0)) fail("remote state without remote ranks, or none with them");
    } catch (const error& e) {
      ++rejected;
      if (e.domain() != error_domain::config || e.call().empty() || std::string(e.what()).find(e.call()) == std::string::npos)
        fail(std::string("unclear rejection: ") + e.what());
    } catch (const std::exception& e) {
      fail(std::string("foreign exception: ") + e.what());
    }
  }
  std::printf("fuzz_layout: %ld configs, %ld accepted, %ld rejected, %d failures\n", iterations, accepted, rejected,
              failures);
  if (accepted == 0 || rejected == 0) fail("the generator must exercise both outcomes");
  return failures ? 1 : 0;
}
