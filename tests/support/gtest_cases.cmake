# Included by ctest when it starts (TEST_INCLUDE_FILES, see epgraph_gtest in tests/CMakeLists.txt):
# lists the cases of a gtest binary and adds one ctest entry per case, <PREFIX>.<Suite>.<Case>.
# Listing at test time needs nothing from the build machine (no GPU).
# Our own listing rather than CMake's gtest_discover_tests: that one (CMake 3.25) always adds
# SKIP_REGULAR_EXPRESSION "[  SKIPPED ]", ctest keeps it next to any regex we set, and a matching
# regex beats the exit code, so a run that printed a skip and then failed (a failing test-suite
# teardown after a skipped case, say) would read "Skipped". Here a case is skipped only when it
# exits SKIP_CODE, which gtest_main.cpp returns only when nothing failed.
# Inputs: EXE, PREFIX, LABEL, TIMEOUT, SKIP_CODE.
execute_process(COMMAND "${EXE}" --gtest_list_tests RESULT_VARIABLE rc OUTPUT_VARIABLE listing ERROR_VARIABLE err
                TIMEOUT 120)
if(NOT rc EQUAL 0)
  # One entry that fails and shows why (ctest goes on with the other tests).
  add_test("${PREFIX}.list_tests" "${EXE}" --gtest_list_tests)
  set_tests_properties("${PREFIX}.list_tests" PROPERTIES LABELS "${LABEL}")
  return()
endif()
string(REPLACE "\n" ";" lines "${listing}")
set(suite "")
foreach(line IN LISTS lines)
  string(REGEX REPLACE " *#.*$" "" line "${line}")  # "# GetParam() = ..." of parameterized cases
  if(line MATCHES "^([A-Za-z0-9_/]+)\\.$")
    set(suite "${CMAKE_MATCH_1}")
  elseif(line MATCHES "^  ([A-Za-z0-9_/]+)$" AND suite)
    set(name "${suite}.${CMAKE_MATCH_1}")
    add_test("${PREFIX}.${name}" "${EXE}" "--gtest_filter=${name}")
    set_tests_properties("${PREFIX}.${name}" PROPERTIES LABELS "${LABEL}" TIMEOUT "${TIMEOUT}"
                         SKIP_RETURN_CODE "${SKIP_CODE}")
    if(name MATCHES "(^|\\.)DISABLED_")
      set_tests_properties("${PREFIX}.${name}" PROPERTIES DISABLED TRUE)
    endif()
  endif()
endforeach()
