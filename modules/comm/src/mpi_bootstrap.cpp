// nccl_comm::bootstrap over MPI: part of epgraph::mpi, so that epgraph::comm needs no MPI.
#include <string>

#include "epgraph/comm/error.hpp"
#include "epgraph/comm/mpi_context.hpp"
#include "epgraph/comm/mpi_error.hpp"
#include "epgraph/comm/nccl_comm.hpp"

namespace epgraph::comm {

nccl_comm nccl_comm::bootstrap(mpi_comm_ref comm_ref) {
  const MPI_Comm comm = comm_ref.get();
  int rank = 0, size = 0;
  EPG_CHECK_MPI(MPI_Comm_rank(comm, &rank));
  EPG_CHECK_MPI(MPI_Comm_size(comm, &size));
  ncclUniqueId id{};
  // Every rank must reach the broadcast, so a failure on rank 0 is sent as a zero id.
  ncclResult_t made = rank == 0 ? ncclGetUniqueId(&id) : ncclSuccess;
  int made_code = static_cast<int>(made);
  EPG_CHECK_MPI(MPI_Bcast(&made_code, 1, MPI_INT, 0, comm));
  if (made_code != ncclSuccess) {
    throw error(error_domain::nccl, "ncclGetUniqueId (on rank 0)", made_code,
                ncclGetErrorString(static_cast<ncclResult_t>(made_code)), "rerun with NCCL_DEBUG=WARN");
  }
  EPG_CHECK_MPI(MPI_Bcast(&id, sizeof id, MPI_BYTE, 0, comm));
  return from_unique_id(id, rank, size);
}

}  // namespace epgraph::comm
