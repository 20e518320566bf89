# Runs the fake binary (skip_fake.cpp, with gtest_main.cpp) through a real ctest: its cases are
# listed by gtest_cases.cmake exactly as the unit and gpu binaries' are, plus two whole-binary
# runs with the same skip property. Checks that a skip never hides a failure, for one case or for
# a binary that skips some and fails one, and that the skip reason reaches ctest's summary.
# Inputs: FAKE (the binary), WORK_DIR, SKIP_CODE.
file(REMOVE_RECURSE "${WORK_DIR}")
file(MAKE_DIRECTORY "${WORK_DIR}")
file(WRITE "${WORK_DIR}/CTestTestfile.cmake"
  "set(EXE [==[${FAKE}]==])\nset(PREFIX fake)\nset(LABEL fake)\nset(TIMEOUT 60)\nset(SKIP_CODE ${SKIP_CODE})\n"
  "include([==[${CMAKE_CURRENT_LIST_DIR}/gtest_cases.cmake]==])\n"
  "add_test(whole.skip_and_fail [==[${FAKE}]==] --gtest_filter=Fake.Skips:Fake.Fails)\n"
  "add_test(whole.skip_and_pass [==[${FAKE}]==] --gtest_filter=Fake.Skips:Fake.Passes)\n"
  "set_tests_properties(whole.skip_and_fail whole.skip_and_pass PROPERTIES SKIP_RETURN_CODE ${SKIP_CODE})\n")
execute_process(COMMAND ${CMAKE_CTEST_COMMAND} --test-dir "${WORK_DIR}" OUTPUT_VARIABLE out ERROR_VARIABLE err)
message("${out}${err}")
set(expected
  "fake.Fake.Passes|Passed" "fake.Fake.Skips|Skipped" "fake.Fake.Fails|Failed" "fake.Fake.FailsThenSkips|Failed"
  "whole.skip_and_fail|Failed" "whole.skip_and_pass|Passed")
foreach(e IN LISTS expected)
  string(REPLACE "|" ";" e "${e}")
  list(GET e 0 name)
  list(GET e 1 want)
  string(REPLACE "." "\\." pattern "${name}")
  if(want STREQUAL "Passed")
    string(APPEND pattern " \\.+ +Passed")
  else()
    string(APPEND pattern " \\.+\\*\\*\\*${want}")
  endif()
  if(NOT out MATCHES "${pattern}")
    message(FATAL_ERROR "${name}: ctest should report '${want}' (see its output above)")
  endif()
endforeach()
if(NOT out MATCHES "skipped: fake skip reason +=")
  message(FATAL_ERROR "the skip reason is not in ctest's Label Time Summary (see its output above)")
endif()
