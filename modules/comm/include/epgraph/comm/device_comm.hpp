#pragma once
// Device communicator: ncclDevCommCreate with the LSA barrier count the kernels need.
// Collective: yes. Allocates: yes (NCCL's barrier state). Capture-safe: no.
// Creation fails cleanly (ncclInvalidUsage) on communicators without symmetric-memory
// support; that becomes an error whose hint says so.

#include <nccl.h>
#include <nccl_device/impl/comm__types.h>  // host-visible ncclDevComm layout

#include "epgraph/comm/nccl_comm.hpp"
#include "epgraph/comm/unique_handle.hpp"

namespace epgraph::comm {

struct device_comm_traits {
  struct value_type {
    ncclComm_t comm = nullptr;
    ncclDevComm dev{};
    int barriers = 0;
  };
  static bool empty(const value_type& d) noexcept { return d.comm == nullptr; }
  static void destroy(value_type& d) noexcept;  // ncclDevCommDestroy
};

class device_comm {
 public:
  device_comm() = default;
  device_comm(nccl_comm_ref comm, int lsa_barrier_count);

  /// Passed by value (it is ~200 bytes) to kernels as a __grid_constant__ parameter.
  const ncclDevComm& get() const noexcept { return handle_.get().dev; }
  int lsa_size() const noexcept { return get().lsaSize; }
  int lsa_rank() const noexcept { return get().lsaRank; }
  int barrier_count() const noexcept { return handle_.get().barriers; }
  /// Gives up NCCL's barrier state without destroying it (see symmetric_window::leak).
  void leak() noexcept { (void)handle_.release(); }

 private:
  unique_handle<device_comm_traits> handle_;
};

}  // namespace epgraph::comm
