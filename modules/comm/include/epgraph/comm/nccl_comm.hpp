#pragma once
// NCCL communicator: owning `nccl_comm` and non-owning `nccl_comm_ref` (CCCL naming).
// Every constructor is collective over the ranks of the communicator; none is capture-safe.
// A runtime that already has an ncclComm_t passes it as nccl_comm_ref (borrowed, never
// destroyed by epgraph). Needs no MPI: only bootstrap() does, and it lives in epgraph::mpi.

#include <nccl.h>

#include "epgraph/comm/requires_cxx20.hpp"
#include "epgraph/comm/unique_handle.hpp"

namespace epgraph::comm {

/// A borrowed MPI communicator (converts implicitly from MPI_Comm), as nccl_comm::bootstrap takes
/// it. Defined in epgraph/comm/mpi_context.hpp: include that header and link epgraph::mpi
/// (find_package(epgraph COMPONENTS mpi)) to call bootstrap.
class mpi_comm_ref;

/// Throws if the loaded libnccl is not the version whose headers were compiled in
/// (the 2.28 device structs are unversioned: a mismatch faults at run time).
void check_nccl_version();
/// The version code of the loaded library (ncclGetVersion).
int loaded_nccl_version();

class nccl_comm_ref {
 public:
  constexpr nccl_comm_ref(ncclComm_t comm) noexcept : comm_(comm) {}  // NOLINT: implicit by design
  ncclComm_t get() const noexcept { return comm_; }
  int rank() const;
  int size() const;

 private:
  ncclComm_t comm_;
};

struct nccl_comm_traits {
  using value_type = ncclComm_t;
  static bool empty(value_type c) noexcept { return c == nullptr; }
  /// ncclCommDestroy; ncclCommAbort while unwinding from an exception (a peer may not take
  /// part in the destroy, and an unfinished collective would make it wait forever).
  static void destroy(value_type c) noexcept;
};

class nccl_comm {
 public:
  /// Owns nothing.
  nccl_comm() noexcept = default;
  /// Collective over `comm` (an MPI_Comm): rank 0 creates the unique id, MPI broadcasts it.
  /// Part of epgraph::mpi: needs epgraph/comm/mpi_context.hpp (see mpi_comm_ref above).
  static nccl_comm bootstrap(mpi_comm_ref comm);
  /// Collective: every rank passes the same id, its rank and the group size.
  static nccl_comm from_unique_id(const ncclUniqueId& id, int rank, int size);
  /// Takes ownership of a communicator created elsewhere (destroyed with this object).
  static nccl_comm from_native_handle(ncclComm_t comm) noexcept { return nccl_comm(comm); }

  ncclComm_t get() const noexcept { return handle_.get(); }
  /// Gives up ownership; the caller destroys the communicator.
  [[nodiscard]] ncclComm_t release() noexcept { return handle_.release(); }
  /// Local: ncclCommAbort. Stops this rank's unfinished NCCL operations (e.g. after a
  /// peer died during a collective) and frees the communicator; owns nothing afterwards.
  void abort() noexcept;
  operator nccl_comm_ref() const noexcept { return nccl_comm_ref(get()); }  // NOLINT
  int rank() const { return nccl_comm_ref(get()).rank(); }
  int size() const { return nccl_comm_ref(get()).size(); }

 private:
  explicit nccl_comm(ncclComm_t comm) noexcept : handle_(comm) {}
  unique_handle<nccl_comm_traits> handle_;
};

}  // namespace epgraph::comm
