#include "epgraph/comm/ep_session.hpp"

#include <cuda_runtime_api.h>
#include <nccl_device/core.h>  // ncclTeamLsa (host)

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <exception>
#include <sstream>
#include <vector>

#include "epgraph/comm/cuda_handles.hpp"
#include "epgraph/comm/error.hpp"
#include "epgraph/comm/unique_handle.hpp"
#include "placement_table.hpp"
#include "session_state.hpp"
#include "setup_exchange.hpp"

namespace epgraph::comm {
namespace detail {

session_state::session_state(nccl_comm_ref c, ep_config cfg)
    : config(std::move(cfg)), comm(c.get()), rank(c.rank()), agree(c.get(), rank, c.size(), config.deadline_seconds, failed) {
  cudaStream_t s = nullptr;
  EPG_CHECK_CUDA(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  monitor = unique_handle<stream_traits>(s);
}

session_state::~session_state() {
  if (guard) guard->stop();  // before the communicator it may be revoking goes
  // A failed session's exchanges may have stopped half-way on some rank (or were revoked):
  // only aborting the communicator between domains is sure not to wait for a peer.
  if (failed && remote.get()) remote.abort();
  if (agree.stuck()) {
    // Its all-gather did not end when revoked: aborting the communicator could wait for it.
    (void)agreement.release();
    // A host agreement's collective never finished and still runs on the device: freeing
    // memory would wait for it forever. The error that reported it said what to do.
    std::fprintf(stderr, "epgraph: rank %d leaks its session's GPU memory: a host agreement never finished\n", rank);
    (void)local.release();
    (void)remote_memory.release();
  } else if ((failed || agree.broken()) && agreement.get()) {
    agreement.abort();  // an agreement failed (and was revoked) or this rank left
  }
  if (agree.stuck() || !release_nccl) {
    dev.leak();
    window.leak();
    // Local: destroying would wait for peers that may never come.
    domain.abort();
    remote.abort();
    agreement.abort();
  }
}

void session_state::build_view() {
  view = make_session_view(config, layout, rank, window.window(), static_cast<char*>(window.local()), local.as<char>(),
                           static_cast<char*>(remote_memory.get()));
}

device_faults session_state::read_faults() const {
  device_faults f;
  EPG_CHECK_CUDA(cudaMemcpyAsync(&f, view.local_at<device_faults>(layout.faults), sizeof f, cudaMemcpyDeviceToHost,
                                 monitor.get()));
  EPG_CHECK_CUDA(cudaStreamSynchronize(monitor.get()));
  return f;
}

void session_state::teardown(bool local_only) noexcept {
  if (agree.stuck()) return;  // ~session_state leaks instead
  if (local_only) agree.leave(fault_code::session_left);  // peers fail now instead of at their deadline
  // This rank's kernels end by their deadline (and at once if a peer left).
  EPG_REPORT_CUDA(cudaDeviceSynchronize());
  release_nccl = false;
  if (local_only) return;
  try {
    // Only when every rank reached teardown (none left) can NCCL's release calls not wait for
    // a missing peer. A rank that left shows no values.
    const std::int64_t here[1] = {1};
    const auto all = agree.exchange("teardown", here, /*left_is_arrived=*/true);
    release_nccl = std::all_of(all.begin(), all.end(), [](const auto& values) { return !values.empty(); });
  } catch (const error& e) {
    std::fprintf(stderr, "epgraph: rank %d tears its session down locally: %s\n", rank, e.message().c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "epgraph: rank %d tears its session down locally: %s\n", rank, e.what());
  }
}

}  // namespace detail

namespace {

// The guard of a session with several domains: it watches this rank's exchange words and
// revokes the session's communicator between domains when an exchange outlasts its limit,
// twice the deadline plus a second (no deadline: it only carries out abort()).
std::unique_ptr<detail::exchange_guard> make_exchange_guard(detail::session_state& s) {
  const session_view& v = s.view;
  detail::exchange_guard::watched w;
  w.dispatch_word = v.local_at<std::uint64_t>(s.layout.dispatch_word);
  w.remote_words = v.remote_at<std::uint64_t>(s.layout.remote_words);
  w.mark = v.remote_at<std::uint64_t>(s.layout.combine_mark);
  w.combines = v.remote_at<std::uint64_t>(s.layout.combines_done);
  w.dispatch_done = v.remote_at<std::uint64_t>(s.layout.dispatch_done);
  w.faults = v.local_at<device_faults>(s.layout.faults);
  for (int i = 0; i < v.ep_size - v.domain_size; ++i) w.remote_ranks.push_back(v.remote_rank(i));
  int device = 0;
  EPG_CHECK_CUDA(cudaGetDevice(&device));
  const double limit = s.config.deadline_seconds > 0 ? 2 * s.config.deadline_seconds + 1 : 0;
  auto guard = std::make_unique<detail::exchange_guard>(std::move(w), s.remote.get(), *s.remote_calls, device, s.rank, limit,
                                                       s.failed);
  // A peer stuck in an exchange reaches the next host agreement only after its guard fired:
  // the agreements wait that much longer, so the rank that skipped a step does not give up first.
  s.agree.extend_wait(limit);
  return guard;
}

// Returns every rank's `lsa_team` (sent along, not compared).
std::vector<int> check_identical_config(detail::rank_agreement& agree, const ep_config& config, int lsa_team) {
  const auto mine = fingerprint(config);
  std::vector<std::int64_t> values;
  std::vector<std::string> names;
  for (const auto& [name, value] : mine) {
    names.push_back(name);
    values.push_back(value);
  }
  values.push_back(lsa_team);
  auto all = agree.exchange("session setup: config", values);
  std::vector<int> teams;
  for (auto& rank_values : all) {
    teams.push_back(static_cast<int>(rank_values.back()));
    rank_values.pop_back();
  }
  const std::string mismatch = describe_mismatch(names, all);
  if (!mismatch.empty())
    throw_config_error("ep_config", mismatch,
                       mismatch.find("'domain_size'") != std::string::npos
                           ? "every rank must create its ep_session with the same config (domain_size 0 means NCCL's "
                             "NVLink team, which is not the same as a size given)"
                           : "every rank must create its ep_session with the same config");
  return teams;
}

// Collective over `comm`: ncclCommSplit, which every rank reaches only after the agreement
// before it, so it does not fail alone for a reason one rank sees.
// ctas > 0: a blocking config of its own with minCTAs = maxCTAs = ctas (ep_config::remote_ctas);
// 0: the parent's config, inherited.
nccl_comm split_communicator(nccl_comm_ref comm, int color, int key, const char* what, int ctas = 0) {
  ncclComm_t out = nullptr;
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 1;
  config.minCTAs = config.maxCTAs = ctas;
  const ncclResult_t made = ncclCommSplit(comm.get(), color, key, &out, ctas > 0 ? &config : nullptr);
  if (made != ncclSuccess)
    throw error(error_domain::nccl, std::string("ncclCommSplit (") + what + ")", static_cast<int>(made),
                ncclGetErrorString(made), "run with NCCL_DEBUG=WARN for the cause");
  return nccl_comm::from_native_handle(out);
}

void check_device(const ep_config& c, const workspace_layout& l) {
  int device = 0, sms = 0;
  EPG_CHECK_CUDA(cudaGetDevice(&device));
  EPG_CHECK_CUDA(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  if (c.num_ctas > sms)
    throw_config_error("num_ctas", "is " + std::to_string(c.num_ctas) + " but this GPU has " + std::to_string(sms) + " SMs",
                       "all CTAs must be co-resident: use num_ctas <= SM count");
  std::size_t free_bytes = 0, total_bytes = 0;
  EPG_CHECK_CUDA(cudaMemGetInfo(&free_bytes, &total_bytes));
  const std::size_t need = l.window_bytes + l.local_bytes + l.remote_bytes;
  if (need > free_bytes) {
    std::ostringstream msg;
    msg << "the workspace needs " << need << " bytes per GPU (window " << l.window_bytes << ", local " << l.local_bytes
        << ", remote " << l.remote_bytes << ") but only " << free_bytes << " of " << total_bytes << " are free";
    throw error(error_domain::config, "workspace", 0, msg.str(),
                "reduce max_tokens_per_rank (" + std::to_string(c.max_tokens_per_rank) + "), hidden (" +
                    std::to_string(c.hidden) + "), the payload row sizes or use a narrower combine_type");
  }
}

constexpr std::size_t fault_words = sizeof(device_faults) / sizeof(std::int64_t);
static_assert(sizeof(device_faults) % sizeof(std::int64_t) == 0);

std::string describe_faults(const std::vector<device_faults>& all, int* code, bool* fatal) {
  std::ostringstream out;
  int faulty = 0;
  *code = 0;
  *fatal = false;
  for (std::size_t r = 0; r < all.size(); ++r) {
    for (const fault_record* f : {&all[r].fatal, &all[r].input}) {
      if (f->code == fault_code::none) continue;
      out << (faulty++ ? "; " : "") << "rank " << r << ": " << describe(*f);
      if (is_fatal(f->code)) *fatal = true;
      if (*code == 0 || (is_fatal(f->code) && !is_fatal(static_cast<fault_code>(*code))))
        *code = static_cast<int>(f->code);
    }
  }
  return out.str();
}

const char* fatal_hint =
    "the ranks are no longer in step and the session refuses further runs: destroy it on every rank (teardown is "
    "then local) and create a new one. 'out of step': the ranks did not launch the same sequence of dispatch and "
    "combine; 'did not reach': the named ranks stalled, died or launched fewer collectives";
const char* input_hint =
    "fix the routing or token count passed to dispatch; offending entries were skipped or clamped, nothing was "
    "written out of bounds";

// Everything collective of session creation, in order (ep_session's constructor).
void set_up(detail::session_state& s, nccl_comm_ref comm) {
  const int nranks = comm.size();
  ep_config& c = s.config;
  // Identical configs give identical results for every pure check after this: every rank
  // throws together. domain_size 0 resolves from the NVLink teams every rank reported with
  // its config (ncclTeamLsa is local; a rank whose query failed reports 0).
  const int lsa_team = c.domain_size == 0 ? ncclTeamLsa(comm.get()).nRanks : 0;
  const std::vector<int> lsa_teams = check_identical_config(s.agree, c, lsa_team);
  if (nranks != c.ep_size)
    throw_config_error("ep_size", "is " + std::to_string(c.ep_size) + " but the communicator has " +
                                      std::to_string(nranks) + " ranks",
                       "the communicator must be exactly the EP group");
  const bool resolved = c.domain_size == 0;
  c.domain_size = resolve_domain_size(c.domain_size, c.ep_size, lsa_teams);
  if (resolved && c.domain_size == 1 && c.ep_size > 1 && s.rank == 0)
    std::fprintf(stderr,
                 "epgraph: domain_size 0 resolved to 1: NCCL's NVLink team is this rank alone, so every peer is reached "
                 "through NCCL send/recv. If GPUs of one node share NVLink, number the ranks node by node\n");
  s.layout = plan_workspace(c);

  // What can fail on one rank only (device limits, out of memory) is agreed before NCCL's
  // collective setup calls, which must then not fail alone.
  symmetric_memory memory;
  s.agree.agreed("session setup: device checks and allocation", [&] {
    check_device(c, s.layout);
    memory = symmetric_memory(s.layout.window_bytes);
    s.local = device_buffer(s.layout.local_bytes);
    if (s.layout.remote_bytes) s.remote_memory = symmetric_memory(s.layout.remote_bytes);
  });
  // Several domains: the window and device communicator live on this rank's domain, split off
  // the EP communicator (collective over it), the exchanges with other domains on another
  // split (with remote_ctas, a config of its own).
  const int L = c.ranks_per_domain();
  if (L < nranks) {
    s.domain = split_communicator(comm, s.rank / L, s.rank % L, "this rank's domain");
    s.remote = split_communicator(comm, 0, s.rank, "the exchanges between domains", c.remote_ctas);
    // The host agreements leave the caller's communicator: one that misses its deadline is
    // revoked, and nothing unfinished stays behind on a communicator the user still owns.
    s.agreement = split_communicator(comm, 0, s.rank, "the session's host agreements");
    s.agree.use_own_communicator(s.agreement.get());
  }
  const nccl_comm_ref window_comm = L < nranks ? nccl_comm_ref(s.domain) : comm;
  s.window = symmetric_window(window_comm, std::move(memory));
  s.dev = device_comm(window_comm, c.num_ctas);
  s.build_view();
  // After this agreement every rank's memory is zeroed: from now on peers may write into it.
  s.agree.agreed("session setup: LSA team and zeroed workspace", [&] {
    check_lsa_team(c.ep_size, L, s.rank, s.dev.lsa_size(), s.dev.lsa_rank());
    EPG_CHECK_CUDA(cudaMemset(s.window.local(), 0, s.layout.window_bytes));
    EPG_CHECK_CUDA(cudaMemset(s.local.get(), 0, s.layout.local_bytes));
    s.placement = c.placement_table() ? detail::initial_placement(c) : default_placement(c);
    if (c.placement_table()) {
      const std::vector<std::int32_t> flat = detail::flatten(s.placement, c);
      EPG_CHECK_CUDA(cudaMemcpy(s.view.local_at<std::int32_t>(s.layout.placement), flat.data(),
                                flat.size() * sizeof(std::int32_t), cudaMemcpyHostToDevice));
    }
    if (s.layout.remote_bytes) {
      EPG_CHECK_CUDA(cudaMemset(s.remote_memory.get(), 0, s.layout.remote_bytes));
      const std::uint64_t started = 1;  // the combine exchange's mark (workspace_layout.hpp)
      char* remote = static_cast<char*>(s.remote_memory.get());
      EPG_CHECK_CUDA(cudaMemcpy(remote + s.layout.combine_started.offset, &started, sizeof started,
                                cudaMemcpyHostToDevice));
    }
    EPG_CHECK_CUDA(cudaDeviceSynchronize());
    if (L < nranks) s.guard = make_exchange_guard(s);
  });
  if (L < nranks) s.agree.agreed("session setup: connections between domains", [&] { detail::connect_remote_ranks(s); });
  // The mailbox reaches every rank only when the window spans the EP group; with several
  // domains the host agreements stay on NCCL, on the session's own communicator (bounded the
  // same way; see agreement.hpp).
  if (L == nranks) {
    detail::mailbox_view m;
    m.window = s.view.window;
    m.window_local = s.view.window_local;
    m.mailbox_offset = s.layout.mailbox.offset;
    m.arrivals_offset = s.layout.arrivals.offset;
    m.faults = s.view.local_at<device_faults>(s.layout.faults);
    m.rank = s.rank;
    m.ranks = c.ep_size;
    m.ctas = c.num_ctas;
    s.agree.attach(m);
  }
}

}  // namespace

ep_session::ep_session(nccl_comm_ref comm, ep_config config) : uncaught_at_creation_(std::uncaught_exceptions()) {
  check_nccl_version();
  validate(config);  // local, before anything collective: deadline_seconds bounds the setup agreements
  auto s = std::make_shared<detail::session_state>(comm, std::move(config));
  try {
    set_up(*s, comm);
  } catch (...) {
    // A setup agreement that broke (a peer missing or out of step): NCCL's release calls
    // could wait for that peer, so the state is torn down locally, as after a failed teardown.
    if (s->agree.broken()) s->release_nccl = false;
    throw;
  }
  state_ = std::move(s);
}

ep_session::~ep_session() {
  if (!state_) return;
  // While unwinding, after abort() or once the host agreement broke, nobody is waited for. A
  // fatal fault every rank saw in check_faults() keeps the ranks' agreement intact: teardown
  // stays collective (bounded by the deadline), so NCCL's resources are released.
  const bool unwinding = std::uncaught_exceptions() > uncaught_at_creation_;
  state_->teardown(unwinding || state_->agree.broken());
  state_.reset();  // links expire here
}

ep_session::ep_session(ep_session&&) noexcept = default;
ep_session& ep_session::operator=(ep_session&& o) noexcept {
  if (this != &o) {
    ep_session dying(std::move(*this));
    state_ = std::move(o.state_);
    uncaught_at_creation_ = o.uncaught_at_creation_;
  }
  return *this;
}

const ep_config& ep_session::config() const noexcept { return state_->config; }
const workspace_layout& ep_session::layout() const noexcept { return state_->layout; }
int ep_session::rank() const noexcept { return state_->rank; }
nccl_comm_ref ep_session::comm() const noexcept { return state_->comm; }
const ncclDevComm& ep_session::dev_comm() const noexcept { return state_->dev.get(); }
const session_view& ep_session::view() const noexcept { return state_->view; }
ncclComm_t ep_session::remote_comm() const noexcept { return state_->remote.get(); }
std::shared_ptr<std::timed_mutex> ep_session::remote_calls() const noexcept { return state_->remote_calls; }

session_link ep_session::link() const noexcept {
  session_link l;
  l.state_ = state_;
  l.linked_ = true;
  return l;
}

const std::int32_t* ep_session::recv_counts() const noexcept { return view().window_at<std::int32_t>(layout().counts); }
const std::int32_t* ep_session::recv_topk_ids() const noexcept {
  return view().window_at<std::int32_t>(layout().topk_ids);
}
const void* ep_session::recv_payload(int i) const {
  (void)state();
  if (i < 0 || i >= layout().num_payloads)
    throw_config_error("payload index", std::to_string(i) + " is not a configured payload");
  return view().window_at<char>(layout().payloads[i]);
}
const std::int32_t* ep_session::local_expert_counts() const noexcept {
  return view().local_at<std::int32_t>(layout().expert_counts);
}
ep_session::expert_load ep_session::read_expert_load() const {
  const detail::session_state& s = state();
  std::vector<std::uint64_t> words(s.layout.expert_load.bytes / sizeof(std::uint64_t));
  EPG_CHECK_CUDA(cudaDeviceSynchronize());
  EPG_CHECK_CUDA(cudaMemcpy(words.data(), s.view.local_at<std::uint64_t>(s.layout.expert_load), s.layout.expert_load.bytes,
                            cudaMemcpyDeviceToHost));
  expert_load load;
  load.received = words.back();
  words.pop_back();
  load.tokens = std::move(words);
  return load;
}

void ep_session::set_placement(const expert_placement& placement) {
  detail::session_state& s = state();
  // Checked on every rank first, then compared: a rank with a bad or different table makes
  // every rank throw before any device copy.
  std::exception_ptr problem;
  std::vector<std::int32_t> flat;
  try {
    detail::check_placement_fits(placement, s.config);
    flat = detail::flatten(placement, s.config);
  } catch (...) {
    problem = std::current_exception();
  }
  const std::int64_t mine[] = {problem ? 0 : 1, problem ? 0 : static_cast<std::int64_t>(detail::placement_hash(flat))};
  const auto all = s.agree.exchange("set_placement", mine);
  std::vector<int> bad, differ;
  for (int r = 0; r < static_cast<int>(all.size()); ++r) {
    const auto& theirs = all[static_cast<std::size_t>(r)];
    if (theirs.size() < 2 || theirs[0] != 1) bad.push_back(r);
    else if (theirs[1] != mine[1]) differ.push_back(r);
  }
  auto ranks = [](const std::vector<int>& v) {
    std::string out;
    for (int r : v) out += (out.empty() ? "" : ", ") + std::to_string(r);
    return out;
  };
  if (problem) std::rethrow_exception(problem);  // this rank's own reason, with its field
  if (!bad.empty())
    throw_config_error("set_placement", "rank(s) " + ranks(bad) + " passed a table that does not fit the session",
                       "every rank must pass the same valid table");
  if (!differ.empty())
    throw_config_error("set_placement", "rank(s) " + ranks(differ) + " passed another table than this rank",
                       "every rank must pass the same table (e.g. computed on rank 0 and broadcast)");
  // First every device idle (no step reads the table while it changes), then the copy. A copy
  // that fails on one rank leaves the ranks with different tables: the session then refuses
  // every further run (the error says so) instead of computing with them.
  s.agree.agreed("set_placement: device idle", [] { EPG_CHECK_CUDA(cudaDeviceSynchronize()); });
  try {
    s.agree.agreed("set_placement: copy to the device", [&] {
      EPG_CHECK_CUDA(cudaMemcpy(s.view.local_at<std::int32_t>(s.layout.placement), flat.data(),
                                flat.size() * sizeof(std::int32_t), cudaMemcpyHostToDevice));
      EPG_CHECK_CUDA(cudaDeviceSynchronize());  // the whole table lands before any later step
    });
  } catch (...) {
    s.failed = true;
    throw;
  }
  s.placement = placement;
}

const expert_placement& ep_session::placement() const { return state().placement; }

placement_ref ep_session::placement_table() const noexcept { return view().placement(); }

void ep_session::reset_expert_load() {
  const detail::session_state& s = state();
  EPG_CHECK_CUDA(cudaDeviceSynchronize());
  EPG_CHECK_CUDA(cudaMemset(s.view.local_at<std::uint64_t>(s.layout.expert_load), 0, s.layout.expert_load.bytes));
  EPG_CHECK_CUDA(cudaDeviceSynchronize());
}

void* ep_session::combine_region() const noexcept { return view().window_at<char>(layout().combine); }

detail::session_state& ep_session::state() const {
  if (!state_)
    throw error(error_domain::config, "ep_session", 0, "this session was moved from",
                "use the ep_session it was moved into");
  return *state_;
}

device_faults ep_session::read_faults() const { return state().read_faults(); }

void ep_session::clear_input_faults() {
  const detail::session_state& s = state();
  EPG_CHECK_CUDA(cudaMemsetAsync(&s.view.local_at<device_faults>(s.layout.faults)->input, 0, sizeof(fault_record),
                                 s.monitor.get()));
  EPG_CHECK_CUDA(cudaStreamSynchronize(s.monitor.get()));
}

void ep_session::check_faults() {
  detail::session_state& s = state();
  EPG_CHECK_CUDA(cudaDeviceSynchronize());
  const device_faults mine = s.read_faults();
  std::int64_t words[fault_words];
  std::memcpy(words, &mine, sizeof mine);
  std::vector<std::vector<std::int64_t>> gathered;
  try {
    gathered = s.agree.exchange("check_faults", words);
  } catch (const error& e) {
    // The agreement failed (a peer left or did not come): report this rank's own faults with it.
    const fault_record& own = mine.first();
    if (own.code == fault_code::none) throw;
    throw error(error_domain::device, "check_faults (rank " + std::to_string(s.rank) + ")", static_cast<int>(own.code),
                "rank " + std::to_string(s.rank) + ": " + describe(own) + "; and " + e.message(), fatal_hint);
  }
  std::vector<device_faults> all(gathered.size());
  for (std::size_t r = 0; r < gathered.size(); ++r) {
    if (gathered[r].size() != fault_words)
      throw error(error_domain::internal, "check_faults", 0, "rank " + std::to_string(r) + " sent no fault record", {});
    std::memcpy(static_cast<void*>(&all[r]), gathered[r].data(), sizeof(device_faults));
  }
  if (mine.input.code != fault_code::none) clear_input_faults();
  int code = 0;
  bool fatal = false;
  const std::string text = describe_faults(all, &code, &fatal);
  if (text.empty()) return;
  if (fatal) s.failed = true;
  throw error(error_domain::device, "check_faults (rank " + std::to_string(s.rank) + ")", code, text,
              fatal ? fatal_hint : input_hint);
}

std::vector<collective_position> ep_session::peer_progress() const {
  const detail::session_state& s = state();
  const int L = s.view.domain_size, ctas = s.config.num_ctas;
  std::vector<std::uint64_t> words(static_cast<std::size_t>(L) * ctas);
  EPG_CHECK_CUDA(cudaMemcpyAsync(words.data(), s.view.window_at<std::uint64_t>(s.layout.arrivals),
                                 words.size() * sizeof(std::uint64_t), cudaMemcpyDeviceToHost, s.monitor.get()));
  EPG_CHECK_CUDA(cudaStreamSynchronize(s.monitor.get()));
  std::vector<collective_position> seen(static_cast<std::size_t>(s.config.ep_size));
  for (int p = 0; p < L; ++p) {
    collective_position& r = seen[static_cast<std::size_t>(s.view.domain_first + p)];
    for (int b = 0; b < ctas; ++b) {
      const std::uint64_t w = words[static_cast<std::size_t>(p) * ctas + b];
      if (progress_kind(w) == collective_kind::stopped) {
        r.stopped = true;
      } else if (progress_seq(w) > r.seq) {
        r.seq = progress_seq(w);
        r.kind = progress_kind(w);
      }
    }
  }
  return seen;
}

void ep_session::abort() noexcept {
  if (!state_) return;
  state_->agree.leave(fault_code::session_left);
  if (state_->guard) state_->guard->request_abort();  // the exchanges between domains end now
}

bool ep_session::failed() const noexcept { return state_ && state_->failed; }

void ep_session::agreed(std::string_view what, const std::function<void()>& step) const {
  state().agree.agreed(what, step);
}

bool ep_session::all_agree(bool ok) const { return state().agree.failing_ranks("all_agree", ok).empty(); }

void ep_session::barrier() const { (void)state().agree.exchange("barrier", {}); }

cudaError_t session_link::launch_status() const noexcept {
  if (!linked_) return cudaSuccess;
  const auto s = state_.lock();
  if (!s) return cudaErrorInvalidResourceHandle;
  return s->failed.load(std::memory_order_relaxed) ? cudaErrorNotPermitted : cudaSuccess;
}

void session_link::agreed(std::string_view what, const std::function<void()>& step) const {
  if (!linked_) return step();
  const auto s = state_.lock();
  if (!s)
    throw error(error_domain::config, std::string(what), 0, "its ep_session was destroyed",
                "keep the session alive as long as what was planned from it");
  s->agree.agreed(what, step);
}

}  // namespace epgraph::comm
