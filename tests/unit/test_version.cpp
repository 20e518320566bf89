// epgraph::version() must be project(epgraph VERSION ...): tests/CMakeLists.txt passes that
// value as EPGRAPH_CMAKE_VERSION, so a hand-edited or stale version header fails here.
#include <gtest/gtest.h>

#include <string>

#include "epgraph/comm/version.hpp"

#ifndef EPGRAPH_CMAKE_VERSION
#error "tests/CMakeLists.txt passes EPGRAPH_CMAKE_VERSION (the CMake project version)"
#endif

TEST(Version, LibraryIsTheCMakeProjectVersion) {
  EXPECT_EQ(epgraph::version(), EPGRAPH_CMAKE_VERSION);
  EXPECT_EQ(epgraph::header_version, epgraph::version());
}

TEST(Version, PartsMatchTheString) {
  const std::string parts = std::to_string(epgraph::version_major) + "." + std::to_string(epgraph::version_minor) +
                            "." + std::to_string(epgraph::version_patch);
  EXPECT_EQ(parts, EPGRAPH_CMAKE_VERSION);
}
