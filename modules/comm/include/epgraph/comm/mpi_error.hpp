#pragma once
// EPG_CHECK_MPI: the MPI check macro of epgraph's optional MPI part (target epgraph::mpi,
// find_package(epgraph COMPONENTS mpi)). Kept out of error.hpp so that epgraph::comm, kernels
// and graph never need <mpi.h>.

#if !__has_include(<mpi.h>)
#error "epgraph/comm/mpi_error.hpp needs MPI: link epgraph::mpi (find_package(epgraph COMPONENTS mpi)), which brings MPI's include directories"
#endif

#include <mpi.h>

#include <source_location>

#include "epgraph/comm/error.hpp"

namespace epgraph::comm::detail {
/// Throws error(error_domain::mpi) with MPI_Error_string's text for `code`.
[[noreturn]] void throw_mpi(int code, const char* call, std::source_location where);
}  // namespace epgraph::comm::detail

#define EPG_CHECK_MPI(expr)                                                                  \
  do {                                                                                       \
    int epg_status_ = (expr);                                                                \
    if (epg_status_ != MPI_SUCCESS)                                                          \
      ::epgraph::comm::detail::throw_mpi(epg_status_, #expr, std::source_location::current()); \
  } while (0)
