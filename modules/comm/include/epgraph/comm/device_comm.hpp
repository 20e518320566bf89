#pragma once
// Device communicator: ncclDevCommCreate with the LSA barrier count the kernels need.
// Collective: yes. Allocates: yes (NCCL's barrier state). Capture-safe: no.
// Creation fails cleanly (ncclInvalidUsage) on communicators without symmetric-memory
// support; that becomes an error whose hint says so.

#include <nccl.h>
#include <nccl_device/impl/comm__types.h>  // host-visible ncclDevComm layout

#include "epgraph/comm/nccl_comm.hpp"

namespace epgraph::comm {

class device_comm {
 public:
  device_comm(nccl_comm_ref comm, int lsa_barrier_count);
  ~device_comm();
  device_comm(const device_comm&) = delete;
  device_comm& operator=(const device_comm&) = delete;
  device_comm(device_comm&& o) noexcept;
  device_comm& operator=(device_comm&&) = delete;

  /// Passed by value (it is ~200 bytes) to kernels as a __grid_constant__ parameter.
  const ncclDevComm& get() const noexcept { return dev_; }
  int lsa_size() const noexcept { return dev_.lsaSize; }
  int lsa_rank() const noexcept { return dev_.lsaRank; }
  int barrier_count() const noexcept { return barriers_; }

 private:
  ncclComm_t comm_ = nullptr;
  ncclDevComm dev_{};
  int barriers_ = 0;
};

}  // namespace epgraph::comm
