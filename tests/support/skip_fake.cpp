// A fake test binary for the skip rule of gtest_main.cpp, run by check_skip_rule.cmake through a
// real ctest: a skip must never turn a failure in the same run into "skipped".
#include <gtest/gtest.h>

TEST(Fake, Passes) {}
TEST(Fake, Skips) { GTEST_SKIP() << "fake skip reason"; }
TEST(Fake, Fails) { ADD_FAILURE() << "fake failure"; }
TEST(Fake, FailsThenSkips) {
  ADD_FAILURE() << "fake failure before the skip";
  GTEST_SKIP() << "skip after a failure";
}
