#include "epgraph/comm/mpi_error.hpp"

#include <cstdio>

namespace epgraph::comm::detail {

void throw_mpi(int code, const char* call, std::source_location where) {
  char text[MPI_MAX_ERROR_STRING] = {};
  int length = 0;
  if (MPI_Error_string(code, text, &length) != MPI_SUCCESS) std::snprintf(text, sizeof text, "unknown MPI error");
  throw error(error_domain::mpi, call, code, text, "check the mpirun command line and that all ranks started",
              where);
}

}  // namespace epgraph::comm::detail
