// The expert placement table (issue 14, host part): today's contiguous rule as a table, moved
// and replicated experts, the deterministic replica choice, and every validation error.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "epgraph/comm/ep_config.hpp"
#include "epgraph/comm/error.hpp"
#include "epgraph/comm/expert_placement.hpp"
#include "placement_table.hpp"

using namespace epgraph::comm;

namespace {

// The validation message of `p` on `ranks` ranks ("" when it passes).
std::string rejection(const expert_placement& p, int ranks) {
  try {
    validate_placement(p, ranks);
  } catch (const error& e) {
    return e.what();
  }
  return {};
}

// 4 logical experts on 2 ranks, 3 slots each: expert 0 has a second replica (physical 4) in
// slot 2 of rank 1, expert 3 moved to slot 2 of rank 0.
expert_placement replicated() {
  expert_placement p;
  p.num_experts = 4;
  p.local_slots = 3;
  p.replica_offsets = {0, 2, 3, 4, 5};
  p.replica_ids = {0, 4, 1, 2, 3};
  p.rank_of = {0, 0, 1, 0, 1};
  p.local_of = {0, 1, 0, 2, 2};
  return p;
}

}  // namespace

TEST(Placement, TheContiguousTableIsTodaysRule) {
  const expert_placement p = contiguous_placement(256, 8);
  EXPECT_EQ(rejection(p, 8), "");
  ASSERT_EQ(p.num_physical(), 256);
  EXPECT_EQ(p.local_slots, 32);
  for (int e = 0; e < 256; ++e) {
    for (int token : {0, 1, 7, 1 << 20}) {
      const std::int32_t id = choose_replica(e, token, p.replica_offsets.data(), p.replica_ids.data());
      ASSERT_EQ(id, e);
    }
    EXPECT_EQ(p.rank_of[e], e / 32);
    EXPECT_EQ(p.local_of[e], e % 32);
  }
  ep_config c;
  c.ep_size = 4;
  c.num_experts = 64;
  EXPECT_EQ(default_placement(c).rank_of, contiguous_placement(64, 4).rank_of);
  EXPECT_THROW(contiguous_placement(10, 4), error);
}

TEST(Placement, ReplicasAreChosenByTokenIndex) {
  const expert_placement p = replicated();
  EXPECT_EQ(rejection(p, 2), "");
  const auto* offsets = p.replica_offsets.data();
  const auto* ids = p.replica_ids.data();
  // Expert 0: even tokens on physical 0 (rank 0), odd tokens on physical 4 (rank 1).
  EXPECT_EQ(choose_replica(0, 0, offsets, ids), 0);
  EXPECT_EQ(choose_replica(0, 1, offsets, ids), 4);
  EXPECT_EQ(choose_replica(0, 2, offsets, ids), 0);
  EXPECT_EQ(choose_replica(0, 2147483647, offsets, ids), 4);
  EXPECT_EQ(choose_replica(3, 5, offsets, ids), 3);
  // Loads: tokens 0..3 all route to experts 0 and 3; token 3 also to expert 1 (twice to 0: once).
  const std::vector<std::int32_t> topk = {0, 3, -1,  // token 0: phys 0 (r0 s0), phys 3 (r0 s2)
                                          0, 3, -1,  // token 1: phys 4 (r1 s2), phys 3
                                          0, 3, 99,  // token 2: phys 0, phys 3; 99 is out of range
                                          0, 1, 0};  // token 3: phys 4, phys 1 (r0 s1); 0 again: once
  const auto load = slot_loads(p, 2, topk, 3);
  EXPECT_EQ(load[0], (std::vector<std::int64_t>{2, 1, 3}));
  EXPECT_EQ(load[1], (std::vector<std::int64_t>{0, 0, 2}));
}

TEST(Placement, EveryInvalidTableIsRejectedNamingTheEntry) {
  auto bad = [](auto edit) {
    expert_placement p = replicated();
    edit(p);
    return rejection(p, 2);
  };
  EXPECT_NE(bad([](expert_placement& p) { p.replica_offsets = {0, 2, 2, 4, 5}; })
                .find("placement.replica_offsets[2]: gives logical expert 1 no replica"),
            std::string::npos);
  EXPECT_NE(bad([](expert_placement& p) { p.replica_offsets.pop_back(); })
                .find("needs num_experts + 1 = 5"),
            std::string::npos);
  EXPECT_NE(bad([](expert_placement& p) { p.replica_ids.push_back(0); }).find("replica_offsets ends at 5"),
            std::string::npos);
  EXPECT_NE(bad([](expert_placement& p) { p.replica_ids[1] = 9; }).find("placement.replica_ids[1]: is 9, outside [0, 5)"),
            std::string::npos);
  EXPECT_NE(bad([](expert_placement& p) { p.replica_ids[1] = 2; })
                .find("uses physical expert 2 again (already a replica of logical expert"),
            std::string::npos);
  EXPECT_NE(bad([](expert_placement& p) { p.rank_of[4] = 2; }).find("placement.rank_of[4]: is 2, outside [0, 2)"),
            std::string::npos);
  EXPECT_NE(bad([](expert_placement& p) { p.local_of[1] = 3; }).find("placement.local_of[1]: is 3, outside [0, 3)"),
            std::string::npos);
  EXPECT_NE(bad([](expert_placement& p) { p.local_of[3] = 0; })
                .find("puts physical expert 3 into slot 0 of rank 0, which physical expert 0 already holds"),
            std::string::npos);
  EXPECT_NE(bad([](expert_placement& p) {
              p.rank_of.push_back(1);
              p.local_of.push_back(1);
            }).find("physical expert 5, which no logical expert uses"),
            std::string::npos);
  EXPECT_NE(bad([](expert_placement& p) { p.local_of.pop_back(); }).find("placement.local_of: has 4 entries"),
            std::string::npos);
}

// What a session with a placement table keeps on the device (placement_table.hpp, white-box):
// the flat words the kernels read, the fit checks, and the hash the ranks compare.
TEST(Placement, TheDeviceTableHoldsEveryMapInItsOrder) {
  ep_config c;
  c.ep_size = 2;
  c.max_tokens_per_rank = 8;
  c.top_k = 2;
  c.num_experts = 4;
  c.hidden = 16;
  c.expert_slots_per_rank = 3;
  c.payloads = {{"hidden", 32}};
  EXPECT_EQ(c.local_slots(), 3);
  EXPECT_EQ(c.physical_experts(), 6);
  const std::vector<std::int32_t> flat = detail::flatten(replicated(), c);
  // replica_offsets [5], then replica_ids, rank_of, local_of, logical_of, slot_expert, each [6].
  const std::vector<std::int32_t> want = {0, 2, 3, 4, 5,          // replica_offsets
                                          0, 4, 1, 2, 3, -1,      // replica_ids (padded)
                                          0, 0, 1, 0, 1, -1,      // rank_of (physical 5 unused)
                                          0, 1, 0, 2, 2, -1,      // local_of
                                          0, 1, 2, 3, 0, -1,      // logical_of
                                          0, 1, 3, 2, -1, 0};     // slot_expert [rank][slot]: rank 1 slot 1 empty
  EXPECT_EQ(flat, want);
  EXPECT_NO_THROW(detail::check_placement_fits(replicated(), c));
  const expert_placement start = detail::initial_placement(c);
  EXPECT_EQ(start.local_slots, 3);
  EXPECT_EQ(start.rank_of, (std::vector<std::int32_t>{0, 0, 1, 1}));
  EXPECT_NO_THROW(detail::check_placement_fits(start, c));
  // The hash sees every word.
  std::vector<std::int32_t> other = flat;
  other.back() = 1;
  EXPECT_NE(detail::placement_hash(flat), detail::placement_hash(other));
  EXPECT_EQ(detail::placement_hash(flat), detail::placement_hash(detail::flatten(replicated(), c)));
  // A table for other slots, other experts, or a session without a table.
  auto fit_error = [&](const expert_placement& p, const ep_config& config) {
    try {
      detail::check_placement_fits(p, config);
    } catch (const error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  expert_placement slots = replicated();
  slots.local_slots = 2;
  EXPECT_NE(fit_error(slots, c).find("placement.local_slots: is 2 but the session has 3"), std::string::npos)
      << fit_error(slots, c);
  ep_config more = c;
  more.num_experts = 6;
  more.expert_slots_per_rank = 3;
  EXPECT_NE(fit_error(replicated(), more).find("placement.num_experts: is 4"), std::string::npos);
  ep_config none = c;
  none.expert_slots_per_rank = 0;
  EXPECT_NE(fit_error(replicated(), none).find("expert_slots_per_rank: is 0"), std::string::npos);
  // The config: slots from experts_per_rank up to num_experts.
  ep_config few = c;
  few.expert_slots_per_rank = 1;
  EXPECT_THROW(validate(few), error);
  few.expert_slots_per_rank = 5;
  EXPECT_THROW(validate(few), error);
  few.expert_slots_per_rank = 4;
  EXPECT_NO_THROW(validate(few));
}
