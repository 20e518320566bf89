# One helper per target kind, so every module, app and test is declared the same way.

# epgraph_module(<name> SOURCES ... DEPENDS ...): static library epgraph_<name>,
# alias epgraph::<name>, public headers under modules/<name>/include.
function(epgraph_module name)
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPENDS" ${ARGN})
  add_library(epgraph_${name} STATIC ${ARG_SOURCES})
  add_library(epgraph::${name} ALIAS epgraph_${name})
  set_target_properties(epgraph_${name} PROPERTIES
    EXPORT_NAME ${name}
    CUDA_SEPARABLE_COMPILATION OFF)
  target_include_directories(epgraph_${name} PUBLIC
    $<BUILD_INTERFACE:${CMAKE_CURRENT_SOURCE_DIR}/include>
    $<INSTALL_INTERFACE:include>)
  target_link_libraries(epgraph_${name} PUBLIC ${ARG_DEPENDS})
  epgraph_warnings(epgraph_${name})
  install(TARGETS epgraph_${name} EXPORT epgraphTargets ARCHIVE DESTINATION lib)
  install(DIRECTORY include/ DESTINATION include)
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
