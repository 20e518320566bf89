# Exported package: find_package(epgraph) gives epgraph::comm, epgraph::kernels, epgraph::graph
# (CUDA and NCCL only); find_package(epgraph COMPONENTS mpi) also epgraph::mpi, and only then is
# MPI looked for. The exports carry the usage requirements (cxx_std_20, include directories, and
# the CUDA runtime the consumer picks with CMAKE_CUDA_RUNTIME_LIBRARY).
include(CMakePackageConfigHelpers)
install(EXPORT epgraphTargets NAMESPACE epgraph:: DESTINATION lib/cmake/epgraph)
if(EPGRAPH_BUILD_MPI)
  install(EXPORT epgraphMpiTargets NAMESPACE epgraph:: DESTINATION lib/cmake/epgraph)
endif()
install(FILES cmake/FindNCCL.cmake DESTINATION lib/cmake/epgraph)
configure_package_config_file(cmake/epgraphConfig.cmake.in
  ${CMAKE_CURRENT_BINARY_DIR}/epgraphConfig.cmake INSTALL_DESTINATION lib/cmake/epgraph)
write_basic_package_version_file(${CMAKE_CURRENT_BINARY_DIR}/epgraphConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/epgraphConfig.cmake
              ${CMAKE_CURRENT_BINARY_DIR}/epgraphConfigVersion.cmake
        DESTINATION lib/cmake/epgraph)
