// The one owning-handle template: moves transfer ownership, release gives it up, reset and
// destruction destroy exactly once.
#include <gtest/gtest.h>

#include <vector>

#include "epgraph/comm/unique_handle.hpp"

using epgraph::comm::unique_handle;

namespace {
std::vector<int> destroyed;
struct int_traits {
  using value_type = int;
  static bool empty(int v) noexcept { return v == 0; }
  static void destroy(int v) noexcept { destroyed.push_back(v); }
};
using handle = unique_handle<int_traits>;
}  // namespace

TEST(UniqueHandle, DestroysOnceAtScopeEnd) {
  destroyed.clear();
  { handle h(7); EXPECT_TRUE(h); EXPECT_EQ(h.get(), 7); }
  EXPECT_EQ(destroyed, std::vector<int>{7});
  { handle empty; EXPECT_FALSE(empty); }
  EXPECT_EQ(destroyed, std::vector<int>{7});  // an empty handle destroys nothing
}

TEST(UniqueHandle, MoveTransfersAndAssignDestroysTheOld) {
  destroyed.clear();
  handle a(1), b(2);
  handle c(std::move(a));
  EXPECT_FALSE(a);
  EXPECT_EQ(c.get(), 1);
  c = std::move(b);  // 1 is destroyed, c owns 2
  EXPECT_EQ(destroyed, std::vector<int>{1});
  EXPECT_FALSE(b);
  c = std::move(c);  // self-move keeps ownership
  EXPECT_EQ(c.get(), 2);
  EXPECT_EQ(destroyed, std::vector<int>{1});
}

TEST(UniqueHandle, ReleaseGivesUpAndResetDestroys) {
  destroyed.clear();
  handle a(3), b(4);
  EXPECT_EQ(a.release(), 3);
  EXPECT_FALSE(a);
  b.reset();
  EXPECT_FALSE(b);
  EXPECT_EQ(destroyed, std::vector<int>{4});
}
