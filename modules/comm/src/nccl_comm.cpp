#include "epgraph/comm/nccl_comm.hpp"

#include <exception>
#include <string>

#include "epgraph/comm/error.hpp"

namespace epgraph::comm {

int loaded_nccl_version() {
  int version = 0;
  EPG_CHECK_NCCL(ncclGetVersion(&version));
  return version;
}

void check_nccl_version() {
  const int loaded = loaded_nccl_version();
  if (loaded != NCCL_VERSION_CODE) {
    throw error(error_domain::nccl, "ncclGetVersion", loaded,
                "loaded libnccl is version " + std::to_string(loaded) + " but epgraph was compiled against " +
                    std::to_string(NCCL_VERSION_CODE),
                "the NCCL device API has no ABI guarantee: put the libnccl.so that matches the compiled "
                "headers first on LD_LIBRARY_PATH, or rebuild with NCCL_ROOT pointing at the loaded one");
  }
}

int nccl_comm_ref::rank() const {
  int r = 0;
  EPG_CHECK_NCCL(ncclCommUserRank(comm_, &r));
  return r;
}

int nccl_comm_ref::size() const {
  int n = 0;
  EPG_CHECK_NCCL(ncclCommCount(comm_, &n));
  return n;
}

nccl_comm nccl_comm::from_unique_id(const ncclUniqueId& id, int rank, int size) {
  check_nccl_version();
  ncclComm_t comm = nullptr;
  EPG_CHECK_NCCL(ncclCommInitRank(&comm, size, id, rank));
  return nccl_comm(comm);
}

void nccl_comm_traits::destroy(value_type c) noexcept {
  if (std::uncaught_exceptions() > 0) EPG_REPORT_NCCL(ncclCommAbort(c));
  else EPG_REPORT_NCCL(ncclCommDestroy(c));
}

void nccl_comm::abort() noexcept {
  const ncclComm_t comm = handle_.release();
  if (comm) EPG_REPORT_NCCL(ncclCommAbort(comm));
}

}  // namespace epgraph::comm
