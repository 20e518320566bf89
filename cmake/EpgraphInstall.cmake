# Exported package: find_package(epgraph) gives epgraph::comm, epgraph::kernels, epgraph::graph.
include(CMakePackageConfigHelpers)
install(EXPORT epgraphTargets NAMESPACE epgraph:: DESTINATION lib/cmake/epgraph)
install(FILES cmake/FindNCCL.cmake DESTINATION lib/cmake/epgraph)
configure_package_config_file(cmake/epgraphConfig.cmake.in
  ${CMAKE_CURRENT_BINARY_DIR}/epgraphConfig.cmake INSTALL_DESTINATION lib/cmake/epgraph)
write_basic_package_version_file(${CMAKE_CURRENT_BINARY_DIR}/epgraphConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/epgraphConfig.cmake
              ${CMAKE_CURRENT_BINARY_DIR}/epgraphConfigVersion.cmake
        DESTINATION lib/cmake/epgraph)
