#include "epgraph/comm/ep_session.hpp"

#include <cuda_runtime_api.h>

#include <cstdio>
#include <sstream>
#include <vector>

#include "epgraph/comm/device_buffer.hpp"
#include "epgraph/comm/device_comm.hpp"
#include "epgraph/comm/error.hpp"
#include "epgraph/comm/symmetric_window.hpp"

namespace epgraph::comm {

std::string_view to_string(fault_code c) noexcept {
  switch (c) {
    case fault_code::none: return "none";
    case fault_code::expert_id_out_of_range: return "expert id out of range (entry skipped)";
    case fault_code::token_count_above_max: return "token count above max_tokens_per_rank (clamped)";
    case fault_code::token_count_negative: return "negative token count (treated as 0)";
  }
  return "unknown fault";
}

std::string device_fault::describe() const {
  std::ostringstream out;
  out << to_string(code);
  if (token >= 0) out << ": token " << token;
  if (entry >= 0) out << ", top-k entry " << entry;
  out << ", value " << value;
  return out.str();
}

void select_device(int local_rank) {
  int count = 0;
  cudaError_t got = cudaGetDeviceCount(&count);
  if (got != cudaSuccess || count == 0) {
    throw error(error_domain::cuda, "cudaGetDeviceCount", static_cast<int>(got),
                got == cudaSuccess ? "no CUDA device found" : cudaGetErrorString(got),
                "epgraph needs one NVIDIA GPU (sm_90) per rank");
  }
  if (local_rank >= count) {
    throw error(error_domain::cuda, "select_device", static_cast<int>(cudaErrorInvalidDevice),
                "node-local rank " + std::to_string(local_rank) + " has no GPU: this node has " +
                    std::to_string(count) + " GPU(s)",
                "start at most one rank per GPU (mpirun -np <= " + std::to_string(count) + " per node)");
  }
  EPG_CHECK_CUDA(cudaSetDevice(local_rank));
}

namespace {
// A small NCCL helper stream and scratch used only during setup and teardown.
struct collective_scratch {
  cudaStream_t stream = nullptr;
  device_buffer buffer;
  explicit collective_scratch(std::size_t bytes) : buffer(bytes) {
    EPG_CHECK_CUDA(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  }
  ~collective_scratch() {
    if (stream) EPG_REPORT_CUDA(cudaStreamDestroy(stream));
  }
  collective_scratch(const collective_scratch&) = delete;
  collective_scratch& operator=(const collective_scratch&) = delete;
};

int all_min(ncclComm_t comm, collective_scratch& s, int value) {
  auto* d = s.buffer.as<int>();
  EPG_CHECK_CUDA(cudaMemcpyAsync(d, &value, sizeof value, cudaMemcpyHostToDevice, s.stream));
  EPG_CHECK_NCCL(ncclAllReduce(d, d, 1, ncclInt32, ncclMin, comm, s.stream));
  EPG_CHECK_CUDA(cudaMemcpyAsync(&value, d, sizeof value, cudaMemcpyDeviceToHost, s.stream));
  EPG_CHECK_CUDA(cudaStreamSynchronize(s.stream));
  return value;
}

// Runs a local step that may fail on some ranks only; every rank learns whether all passed
// and throws together (the failing rank with its own error), so no rank hangs later.
template <class Step>
void agreed(ncclComm_t comm, collective_scratch& s, const char* what, Step&& step) {
  std::exception_ptr failure;
  try {
    step();
  } catch (...) {
    failure = std::current_exception();
  }
  const bool all_ok = all_min(comm, s, failure ? 0 : 1) == 1;
  if (failure) std::rethrow_exception(failure);
  if (!all_ok)
    throw error(error_domain::internal, what, 0, "another rank failed this step",
                "see that rank's error message (this rank is healthy)");
}

void check_identical_config(ncclComm_t comm, collective_scratch& s, const ep_config& config, int nranks) {
  auto mine = fingerprint(config);
  std::vector<std::int64_t> values;
  std::vector<std::string> names;
  for (auto& [name, value] : mine) {
    names.push_back(name);
    values.push_back(value);
  }
  const std::size_t n = values.size();
  device_buffer gathered(n * sizeof(std::int64_t) * static_cast<std::size_t>(nranks));
  auto* d_mine = s.buffer.as<std::int64_t>();
  EPG_CHECK_CUDA(cudaMemcpyAsync(d_mine, values.data(), n * sizeof(std::int64_t), cudaMemcpyHostToDevice, s.stream));
  EPG_CHECK_NCCL(ncclAllGather(d_mine, gathered.get(), n, ncclInt64, comm, s.stream));
  std::vector<std::int64_t> host(n * static_cast<std::size_t>(nranks));
  EPG_CHECK_CUDA(cudaMemcpyAsync(host.data(), gathered.get(), host.size() * sizeof(std::int64_t),
                                 cudaMemcpyDeviceToHost, s.stream));
  EPG_CHECK_CUDA(cudaStreamSynchronize(s.stream));
  std::vector<std::vector<std::int64_t>> all(static_cast<std::size_t>(nranks));
  for (int r = 0; r < nranks; ++r) all[r].assign(host.begin() + r * n, host.begin() + (r + 1) * n);
  std::string mismatch = describe_mismatch(names, all);
  if (!mismatch.empty())
    throw_config_error("ep_config", mismatch, "every rank must create its ep_session with the same config");
}

void check_fits_in_memory(const ep_config& c, const workspace_layout& l) {
  std::size_t free_bytes = 0, total_bytes = 0;
  EPG_CHECK_CUDA(cudaMemGetInfo(&free_bytes, &total_bytes));
  const std::size_t need = l.window_bytes + l.local_bytes;
  if (need > free_bytes) {
    std::ostringstream msg;
    msg << "the workspace needs " << need << " bytes per GPU (window " << l.window_bytes << ", local "
        << l.local_bytes << ") but only " << free_bytes << " of " << total_bytes << " are free";
    throw error(error_domain::config, "workspace", 0, msg.str(),
                "reduce max_tokens_per_rank (" + std::to_string(c.max_tokens_per_rank) + "), hidden (" +
                    std::to_string(c.hidden) + "), the payload row sizes or use a narrower combine_type");
  }
}
}  // namespace

struct ep_session::state {
  ep_config config;
  workspace_layout layout;
  ncclComm_t comm;
  int rank;
  collective_scratch scratch;
  // Declared in setup order, so members are destroyed in the order NCCL asks for:
  // local state, devComm, window (deregister + free).
  std::unique_ptr<symmetric_window> window;
  std::unique_ptr<device_comm> dev;
  device_buffer local;

  state(nccl_comm_ref c, ep_config cfg)
      : config(std::move(cfg)), comm(c.get()), rank(c.rank()), scratch(max_fingerprint_bytes()) {}

  static std::size_t max_fingerprint_bytes() { return 64 * sizeof(std::int64_t); }
};

ep_session::ep_session(nccl_comm_ref comm, ep_config config) {
  check_nccl_version();
  const int nranks = comm.size();
  state_ = std::make_unique<state>(comm, std::move(config));
  state& s = *state_;

  check_identical_config(s.comm, s.scratch, s.config, nranks);
  // Identical configs give identical validation results: every rank throws together.
  s.layout = plan_workspace(s.config);
  if (nranks != s.config.ep_size)
    throw_config_error("ep_size", "is " + std::to_string(s.config.ep_size) + " but the communicator has " +
                                      std::to_string(nranks) + " ranks",
                       "the communicator must be exactly the EP group");

  agreed(s.comm, s.scratch, "device checks", [&] {
    int device = 0, sms = 0;
    EPG_CHECK_CUDA(cudaGetDevice(&device));
    EPG_CHECK_CUDA(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
    if (s.config.num_ctas > sms)
      throw_config_error("num_ctas", "is " + std::to_string(s.config.num_ctas) + " but this GPU has " +
                                         std::to_string(sms) + " SMs",
                         "all CTAs must be co-resident: use num_ctas <= SM count");
    check_fits_in_memory(s.config, s.layout);
  });
  // ncclMemAlloc is local and may fail on one rank only; registering is collective.
  symmetric_memory memory;
  agreed(s.comm, s.scratch, "allocate symmetric memory", [&] { memory = symmetric_memory(s.layout.window_bytes); });
  s.window = std::make_unique<symmetric_window>(comm, std::move(memory));
  s.dev = std::make_unique<device_comm>(comm, s.config.num_ctas);
  agreed(s.comm, s.scratch, "check the LSA team",
         [&] { check_lsa_team(s.config.ep_size, s.rank, s.dev->lsa_size(), s.dev->lsa_rank()); });
  agreed(s.comm, s.scratch, "allocate local state", [&] {
    s.local = device_buffer(s.layout.local_bytes);
    EPG_CHECK_CUDA(cudaMemset(s.local.get(), 0, s.layout.local_bytes));
    EPG_CHECK_CUDA(cudaMemset(s.window->local(), 0, s.layout.window_bytes));
    EPG_CHECK_CUDA(cudaDeviceSynchronize());
  });
  barrier();  // no rank writes into a peer's window before that peer zeroed it
}

ep_session::~ep_session() {
  if (!state_) return;
  // Teardown is local in NCCL: make sure this rank is idle and every peer is done
  // touching our window before it is deregistered.
  EPG_REPORT_CUDA(cudaDeviceSynchronize());
  try {
    barrier();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "epgraph: teardown barrier failed: %s\n", e.what());
  }
}

ep_session::ep_session(ep_session&&) noexcept = default;
ep_session& ep_session::operator=(ep_session&& o) noexcept {
  if (this != &o) {
    ep_session dying(std::move(*this));
    state_ = std::move(o.state_);
  }
  return *this;
}

const ep_config& ep_session::config() const noexcept { return state_->config; }
const workspace_layout& ep_session::layout() const noexcept { return state_->layout; }
int ep_session::rank() const noexcept { return state_->rank; }
nccl_comm_ref ep_session::comm() const noexcept { return state_->comm; }
const ncclDevComm& ep_session::dev_comm() const noexcept { return state_->dev->get(); }

session_view ep_session::view() const noexcept {
  const state& s = *state_;
  const auto& c = s.config;
  const auto& l = s.layout;
  auto* local = s.local.as<char>();
  session_view v{};
  v.window = s.window->window();
  v.window_local = static_cast<char*>(s.window->local());
  v.rank = s.rank;
  v.ep_size = c.ep_size;
  v.max_tokens = c.max_tokens_per_rank;
  v.top_k = c.top_k;
  v.num_experts = c.num_experts;
  v.experts_per_rank = c.experts_per_rank();
  v.hidden = c.hidden;
  v.combine_type = c.combine_type;
  v.num_payloads = static_cast<int>(c.payloads.size());
  v.counts_offset = l.counts.offset;
  v.progress_offset = l.progress.offset;
  v.topk_ids_offset = l.topk_ids.offset;
  v.combine_offset = l.combine.offset;
  v.combine_row_bytes = l.combine_row_bytes;
  for (int i = 0; i < v.num_payloads; ++i) {
    v.payload_offset[i] = l.payloads[i].offset;
    v.payload_row_bytes[i] = c.payloads[i].row_bytes;
  }
  v.token_slots = reinterpret_cast<std::int32_t*>(local + l.token_slots.offset);
  v.lookback = reinterpret_cast<unsigned long long*>(local + l.lookback.offset);
  v.dispatches = reinterpret_cast<unsigned long long*>(local + l.dispatches.offset);
  v.error = reinterpret_cast<std::int32_t*>(local + l.error.offset);
  v.expert_counts = reinterpret_cast<std::int32_t*>(local + l.expert_counts.offset);
  v.num_ctas = c.num_ctas;
  v.threads_per_cta = c.threads_per_cta;
  return v;
}

const std::int32_t* ep_session::recv_counts() const noexcept {
  return reinterpret_cast<const std::int32_t*>(view().window_local + layout().counts.offset);
}
const std::int32_t* ep_session::recv_topk_ids() const noexcept {
  return reinterpret_cast<const std::int32_t*>(view().window_local + layout().topk_ids.offset);
}
const void* ep_session::recv_payload(int i) const {
  if (i < 0 || i >= static_cast<int>(layout().payloads.size()))
    throw_config_error("payload index", std::to_string(i) + " is not a configured payload");
  return view().window_local + layout().payloads[i].offset;
}
const std::int32_t* ep_session::local_expert_counts() const noexcept { return view().expert_counts; }
void* ep_session::combine_region() const noexcept { return view().window_local + layout().combine.offset; }

device_fault ep_session::read_fault() const {
  std::int32_t word[4] = {};
  EPG_CHECK_CUDA(cudaDeviceSynchronize());
  EPG_CHECK_CUDA(cudaMemcpy(word, view().error, sizeof word, cudaMemcpyDeviceToHost));
  return device_fault{static_cast<fault_code>(word[0]), word[1], word[2], word[3]};
}

void ep_session::clear_faults() { EPG_CHECK_CUDA(cudaMemset(view().error, 0, 4 * sizeof(std::int32_t))); }

void ep_session::check_faults() {
  device_fault f = read_fault();
  if (f.code == fault_code::none) return;
  clear_faults();
  throw error(error_domain::device, "dispatch/combine input check on rank " + std::to_string(rank()),
              static_cast<int>(f.code), f.describe(),
              "fix the routing or token count passed to dispatch; offending entries were skipped or clamped, "
              "nothing was written out of bounds");
}

std::vector<std::uint64_t> ep_session::peer_progress() const {
  const state& s = *state_;
  std::vector<std::uint64_t> seen(static_cast<std::size_t>(s.config.ep_size));
  const char* src = static_cast<const char*>(s.window->local()) + s.layout.progress.offset;
  EPG_CHECK_CUDA(cudaMemcpyAsync(seen.data(), src, seen.size() * sizeof(std::uint64_t), cudaMemcpyDeviceToHost,
                                 s.scratch.stream));
  EPG_CHECK_CUDA(cudaStreamSynchronize(s.scratch.stream));
  return seen;
}

void ep_session::barrier() const { (void)all_agree(true); }

bool ep_session::all_agree(bool ok) const { return all_min(state_->comm, state_->scratch, ok ? 1 : 0) == 1; }

}  // namespace epgraph::comm
