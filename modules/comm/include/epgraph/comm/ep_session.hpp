#pragma once
// EP session: the symmetric workspace, device communicator and local state of one rank.
//
// Construction: collective over the communicator; allocates (window + local state);
// not capture-safe. Validates the config, checks it is identical on every rank (a mismatch
// throws on every rank naming the field and values), checks the loaded NCCL version,
// that the communicator is exactly the EP group, and that the LSA team spans it.
// Failures that only one rank can see (out of memory, say) are agreed on, so every rank
// throws instead of some ranks hanging in the next collective.
// Destruction: collective; synchronizes the device, barriers across ranks, then releases
// devComm, window, memory. Never throws. The borrowed communicator must outlive it.

#include <nccl.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "epgraph/comm/ep_config.hpp"
#include "epgraph/comm/nccl_comm.hpp"
#include "epgraph/comm/workspace_layout.hpp"

struct ncclDevComm;

namespace epgraph::comm {

/// Device-side faults, recorded once (the first) in the session's error word.
enum class fault_code : std::int32_t {
  none = 0,
  expert_id_out_of_range = 1,  ///< entry skipped
  token_count_above_max = 2,   ///< clamped to max_tokens_per_rank
  token_count_negative = 3,    ///< treated as 0
};
std::string_view to_string(fault_code c) noexcept;

struct device_fault {
  fault_code code = fault_code::none;
  std::int32_t token = -1;  ///< token index (or -1)
  std::int32_t entry = -1;  ///< top-k entry (or -1)
  std::int32_t value = 0;   ///< offending value
  std::string describe() const;
};

/// Everything a kernel launcher needs, as plain values (host-visible, trivially copyable).
struct session_view {
  ncclWindow_t window;
  char* window_local;  ///< this rank's window memory (ncclMemAlloc alias)
  int rank, ep_size, max_tokens, top_k, num_experts, experts_per_rank, hidden;
  element_type combine_type;
  int num_payloads;
  std::size_t counts_offset, progress_offset, topk_ids_offset, combine_offset, combine_row_bytes;
  std::size_t payload_offset[max_payloads];
  std::size_t payload_row_bytes[max_payloads];
  std::int32_t* token_slots;
  unsigned long long* lookback;
  unsigned long long* dispatches;
  std::int32_t* error;
  std::int32_t* expert_counts;
  int num_ctas, threads_per_cta;
};

/// Throws unless `local_rank` names a GPU of this node; then makes it current.
void select_device(int local_rank);

class ep_session {
 public:
  ep_session(nccl_comm_ref comm, ep_config config);
  ~ep_session();
  ep_session(ep_session&&) noexcept;
  ep_session& operator=(ep_session&&) noexcept;
  ep_session(const ep_session&) = delete;
  ep_session& operator=(const ep_session&) = delete;

  const ep_config& config() const noexcept;
  const workspace_layout& layout() const noexcept;
  int rank() const noexcept;
  nccl_comm_ref comm() const noexcept;
  const ncclDevComm& dev_comm() const noexcept;
  session_view view() const noexcept;

  // Receive side, this rank's memory (valid after dispatch, until the next dispatch).
  const std::int32_t* recv_counts() const noexcept;          ///< [ep]
  const std::int32_t* recv_topk_ids() const noexcept;        ///< [ep][max_tokens][k]
  const void* recv_payload(int i) const;                     ///< [ep][max_tokens][row_bytes_i]
  const std::int32_t* local_expert_counts() const noexcept;  ///< [experts_per_rank] (after summarize)
  /// The workspace combine region [ep][max_tokens][hidden]: an expert stage that writes
  /// here needs no prepare-combine (zero copy).
  void* combine_region() const noexcept;

  /// Reads the device error word (synchronizes the device). Not capture-safe.
  device_fault read_fault() const;
  /// Throws a device-domain error describing the first fault, if any, and clears it.
  void check_faults();
  void clear_faults();

  /// Progress record: entry r is the number of dispatches rank r has started (as last seen
  /// in this rank's window). Reads through a side stream, so it works while a step hangs.
  std::vector<std::uint64_t> peer_progress() const;

  /// Collective host barrier over the communicator (NCCL allreduce + sync). Not capture-safe.
  void barrier() const;
  /// Collective: true only if every rank passes ok == true. Not capture-safe.
  bool all_agree(bool ok) const;

 private:
  struct state;
  std::unique_ptr<state> state_;
};

}  // namespace epgraph::comm
