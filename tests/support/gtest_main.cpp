// main() of the gtest binaries that ctest runs (unit, gpu). ctest learns that a case was skipped
// from the exit code alone (SKIP_RETURN_CODE 77), never from a pattern in the output, so a
// skipped case can never hide a failed one:
//   - anything failed (a test, an environment, SetUpTestSuite): exit 1, ctest reports a failure;
//   - every test that ran was skipped and none failed: exit 77, after printing each skip reason
//     as a ctest label, <CTestLabel>skipped: reason</CTestLabel>, which ctest lists in its
//     "Label Time Summary" (without it the reason shows only with ctest -V);
//   - otherwise: exit 0.
// gtest_cases.cmake gives every case a ctest entry of its own (tests/CMakeLists.txt).
#include <gtest/gtest.h>

#include <cstdio>
#include <set>
#include <string>

namespace {

constexpr int skip_exit_code = 77;

void add_skip_reasons(const testing::TestResult& result, std::set<std::string>& reasons) {
  for (int i = 0; i < result.total_part_count(); ++i) {
    const testing::TestPartResult& part = result.GetTestPartResult(i);
    if (!part.skipped()) continue;
    std::string reason = part.message();
    for (char& c : reason)  // one line, and nothing that ends the label tag early
      if (c == '\n' || c == '\r' || c == '<' || c == '>') c = ' ';
    reasons.insert(reason.empty() ? "no reason given" : reason);
  }
}

}  // namespace

int main(int argc, char** argv) {
  testing::InitGoogleTest(&argc, argv);
  const int rc = RUN_ALL_TESTS();
  const testing::UnitTest& run = *testing::UnitTest::GetInstance();
  if (rc != 0 || run.failed_test_count() > 0 || run.ad_hoc_test_result().Failed()) return 1;
  if (run.skipped_test_count() == 0 || run.successful_test_count() > 0) return 0;

  std::set<std::string> reasons;
  add_skip_reasons(run.ad_hoc_test_result(), reasons);
  for (int s = 0; s < run.total_test_suite_count(); ++s) {
    const testing::TestSuite& suite = *run.GetTestSuite(s);
    add_skip_reasons(suite.ad_hoc_test_result(), reasons);
    for (int t = 0; t < suite.total_test_count(); ++t) add_skip_reasons(*suite.GetTestInfo(t)->result(), reasons);
  }
  for (const std::string& reason : reasons) std::printf("<CTestLabel>skipped: %s</CTestLabel>\n", reason.c_str());
  return skip_exit_code;
}
