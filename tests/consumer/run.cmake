# Consumer projects built against the installed package. CASE picks one (tests/CMakeLists.txt
# runs each as a ctest entry; `install` is their fixture):
#   install               installs the build into WORK_DIR/prefix
#   install_consumer      the README's usage example, mpi component, plain C++ (this folder)
#   consumer_no_mpi       comm/kernels/graph with MPI made unfindable; the mpi component then fails clearly
#   consumer_cxx17_error  C++17 builds (g++ -std=c++17, nvcc's default) stop with epgraph's C++20 message
#   consumer_cuda         LANGUAGES CXX CUDA without C, mpi component, shared CUDA runtime
set(prefix "${WORK_DIR}/prefix")

# step(<expect> <command>...): run; expect 0 (ok) or nonzero (fail); returns its output in `out`.
function(step expect)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE o ERROR_VARIABLE e)
  if(expect STREQUAL "ok" AND NOT rc EQUAL 0)
    message(FATAL_ERROR "failed (${rc}): ${ARGN}\n${o}\n${e}")
  elseif(expect STREQUAL "fail" AND rc EQUAL 0)
    message(FATAL_ERROR "succeeded but should have failed: ${ARGN}\n${o}\n${e}")
  endif()
  message("${o}${e}")
  set(out "${o}\n${e}" PARENT_SCOPE)
endfunction()

# configure(<expect> <source folder> <build folder> [-D...]): a consumer project.
function(configure expect src build)
  step(${expect} ${CMAKE_COMMAND} -S "${src}" -B "${build}" -G Ninja --fresh
       "-DCMAKE_PREFIX_PATH=${prefix}" "-DCUDAToolkit_ROOT=${CUDA_ROOT}" "-DNCCL_ROOT=${NCCL_ROOT}" ${ARGN})
  set(out "${out}" PARENT_SCOPE)
endfunction()

# needs_cudart(<binary> <yes|no>): whether the executable loads the shared CUDA runtime.
function(needs_cudart binary want)
  execute_process(COMMAND readelf -d "${binary}" OUTPUT_VARIABLE dyn RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "readelf -d ${binary} failed")
  endif()
  if(dyn MATCHES "NEEDED[^\n]*libcudart\\.so")
    set(has yes)
  else()
    set(has no)
  endif()
  if(NOT has STREQUAL want)
    message(FATAL_ERROR "${binary}: needs libcudart.so is '${has}', expected '${want}'\n${dyn}")
  endif()
endfunction()

set(build "${WORK_DIR}/${CASE}")
if(CASE STREQUAL "install")
  file(REMOVE_RECURSE "${WORK_DIR}")
  step(ok ${CMAKE_COMMAND} --install "${BUILD_DIR}" --prefix "${prefix}")

elseif(CASE STREQUAL "install_consumer")
  configure(ok "${SOURCE_DIR}/tests/consumer" "${build}" "-DEPGRAPH_README=${SOURCE_DIR}/README.md")
  step(ok ${CMAKE_COMMAND} --build "${build}")
  needs_cudart("${build}/consumer" no)  # nothing asked for the shared runtime: static
  step(ok "${build}/consumer")

elseif(CASE STREQUAL "consumer_no_mpi")
  configure(ok "${SOURCE_DIR}/tests/consumer/no_mpi" "${build}" -DCMAKE_DISABLE_FIND_PACKAGE_MPI=ON)
  step(ok ${CMAKE_COMMAND} --build "${build}")
  step(ok "${build}/consumer_no_mpi")
  configure(fail "${SOURCE_DIR}/tests/consumer/no_mpi" "${build}-ask" -DCMAKE_DISABLE_FIND_PACKAGE_MPI=ON
            -DASK_FOR_MPI=ON)
  if(NOT out MATCHES "component mpi \\(epgraph::mpi")
    message(FATAL_ERROR "the mpi component failed without saying why (expected 'component mpi (epgraph::mpi ...')")
  endif()

elseif(CASE STREQUAL "consumer_cxx17_error")
  # CMake consumers get C++20 from the targets (cxx_std_20; the flag CMake adds for it comes after
  # their own options, see consumer_no_mpi). A C++17 build is one without them, as PyTorch's
  # extension builder compiles with -std=c++17, or nvcc at its default dialect (C++17): each must
  # stop with epgraph's one message (requires_cxx20.hpp).
  set(includes "-I${prefix}/include" "-I${CUDA_ROOT}/include" "-I${NCCL_ROOT}/include")
  step(fail "${CXX_COMPILER}" -std=c++17 -fsyntax-only ${includes} "-DEPGRAPH_FOUND_VERSION=\"0\""
       "${SOURCE_DIR}/tests/consumer/main.cpp")
  if(NOT out MATCHES "#error \"epgraph needs C\\+\\+20: compile with -std=c\\+\\+20")
    message(FATAL_ERROR "a C++17 build (g++ -std=c++17) did not get epgraph's C++20 message")
  endif()
  file(MAKE_DIRECTORY "${build}")
  step(fail "${CUDA_COMPILER}" -x cu -c ${includes} "-DEPGRAPH_FOUND_VERSION=\"0\"" -o "${build}/main.o"
       "${SOURCE_DIR}/tests/consumer/main.cpp")
  if(NOT out MATCHES "epgraph needs C\\+\\+20: compile with -std=c\\+\\+20")
    message(FATAL_ERROR "a C++17 build (nvcc's default dialect) did not get epgraph's C++20 message")
  endif()

elseif(CASE STREQUAL "consumer_cuda")
  configure(ok "${SOURCE_DIR}/tests/consumer/cuda" "${build}" "-DCMAKE_CUDA_COMPILER=${CUDA_COMPILER}")
  step(ok ${CMAKE_COMMAND} --build "${build}")
  needs_cudart("${build}/consumer_cuda" yes)  # CMAKE_CUDA_RUNTIME_LIBRARY Shared was honoured
  # ...and the static one not linked beside it (with a linker that keeps unneeded libraries,
  # NEEDED alone would not tell).
  file(READ "${build}/build.ninja" ninja)
  if(ninja MATCHES "cudart_static")
    message(FATAL_ERROR "consumer_cuda links cudart_static although it asked for the shared CUDA runtime")
  endif()
  step(ok "${build}/consumer_cuda")

else()
  message(FATAL_ERROR "unknown CASE '${CASE}'")
endif()
