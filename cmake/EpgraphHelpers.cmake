# One helper per target kind, so every module, app and test is declared the same way.

# epgraph_module(<name> SOURCES ... DEPENDS ... [EXPORT <set>]): static library epgraph_<name>,
# alias epgraph::<name>, public headers under <this folder>/include, installed into the export
# set <set> (default epgraphTargets; the optional MPI part has a set of its own, so that the
# package config looks for MPI only when that part is asked for).
function(epgraph_module name)
  cmake_parse_arguments(ARG "" "EXPORT" "SOURCES;DEPENDS" ${ARGN})
  if(NOT ARG_EXPORT)
    set(ARG_EXPORT epgraphTargets)
  endif()
  add_library(epgraph_${name} STATIC ${ARG_SOURCES})
  add_library(epgraph::${name} ALIAS epgraph_${name})
  set_target_properties(epgraph_${name} PROPERTIES
    EXPORT_NAME ${name}
    CUDA_SEPARABLE_COMPILATION OFF)
  target_include_directories(epgraph_${name} PUBLIC
    $<BUILD_INTERFACE:${CMAKE_CURRENT_SOURCE_DIR}/include>
    $<INSTALL_INTERFACE:include>)
  # The public headers are C++20: consumers get the standard from the target, whatever their
  # own CMAKE_CXX_STANDARD (requires_cxx20.hpp catches builds that force an older -std).
  target_compile_features(epgraph_${name} PUBLIC cxx_std_20)
  target_link_libraries(epgraph_${name} PUBLIC ${ARG_DEPENDS})
  epgraph_warnings(epgraph_${name})
  install(TARGETS epgraph_${name} EXPORT ${ARG_EXPORT} ARCHIVE DESTINATION lib)
  install(DIRECTORY include/ DESTINATION include)
endfunction()

# epgraph_link_cuda_runtime(<target>): the CUDA runtime that the executable (or shared library)
# linking <target> chose with CUDA_RUNTIME_LIBRARY (initialized from CMAKE_CUDA_RUNTIME_LIBRARY):
# Shared -> CUDA::cudart, None -> nothing, Static or unset -> CUDA::cudart_static (nvcc's own
# default). The expression is evaluated for the consuming target, so the installed package
# imposes no runtime: a PyTorch extension (shared runtime) sets CMAKE_CUDA_RUNTIME_LIBRARY
# Shared and gets libcudart.so, not a second, static runtime next to PyTorch's. Our own
# executables are Static (top-level CMakeLists.txt): the GPU machines have no toolkit.
function(epgraph_link_cuda_runtime target)
  set(rt "$<LOWER_CASE:$<TARGET_PROPERTY:CUDA_RUNTIME_LIBRARY>>")
  target_link_libraries(${target} PUBLIC
    "$<$<STREQUAL:${rt},shared>:CUDA::cudart>"
    "$<$<OR:$<STREQUAL:${rt},static>,$<STREQUAL:${rt},>>:CUDA::cudart_static>")
endfunction()

function(epgraph_warnings target)
  target_compile_options(${target} PRIVATE
    $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra -Wpedantic>
    $<$<COMPILE_LANGUAGE:CUDA>:-Xcompiler=-Wall --expt-relaxed-constexpr>)
  if(EPGRAPH_SANITIZE)
    target_compile_options(${target} PRIVATE $<$<COMPILE_LANGUAGE:CXX>:-fsanitize=address,undefined -fno-omit-frame-pointer>)
    target_link_options(${target} PUBLIC -fsanitize=address,undefined)
  endif()
endfunction()

# epgraph_app(<name> SOURCES ... DEPENDS ...)
function(epgraph_app name)
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPENDS" ${ARGN})
  add_executable(${name} ${ARG_SOURCES})
  target_link_libraries(${name} PRIVATE ${ARG_DEPENDS})
  epgraph_warnings(${name})
  install(TARGETS ${name} RUNTIME DESTINATION bin)
endfunction()
