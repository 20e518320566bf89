// epg-demo: a whole MoE layer step (dispatch -> reference experts -> [prepare-combine] ->
// combine, or with --layout expert-major: dispatch -> permute -> experts -> un-permute ->
// combine) captured once and replayed for batches of varying size, each checked exactly
// against a host reference. Run under mpirun, one rank per GPU.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "cli.hpp"
#include "demo_options.hpp"
#include "epgraph/comm/device_buffer.hpp"
#include "epgraph/comm/error.hpp"
#include "epgraph/comm/mpi_context.hpp"
#include "epgraph/comm/nccl_comm.hpp"
#include "epgraph/graph/step.hpp"
#include "epgraph/graph/watchdog.hpp"
#include "epgraph/sim/device.hpp"
#include "epgraph/sim/reference.hpp"

namespace {

using namespace epgraph;

struct variant_result {
  const char* name;
  int steps = 0;
  long long host_checked = 0;  // steps compared on the host (summed over ranks)
  long long failures = 0;      // host-checked steps with a wrong element (summed over ranks)
  unsigned long long device_wrong = 0;  // wrong elements found by the device check, all steps
  double median_us = 0;
  long long tokens = 0;  // summed over ranks and steps
  double mem_growth_mib = 0;  // largest drop of free GPU memory over the run, any rank
};

// Rank 0's progress during a variant: a run at large T with host checks takes minutes and
// would otherwise print nothing until its summary. One line on the first and the last step
// and whenever progress_interval has passed; rank 0's own counts, since summing over ranks
// would add a collective to every printed step.
class progress_meter {
 public:
  using clock = std::chrono::steady_clock;
  static constexpr std::chrono::seconds progress_interval{2};

  progress_meter(const char* variant, int steps) : variant_(variant), steps_(steps) {}

  bool due(int done) const {
    return done == 1 || done == steps_ || clock::now() - last_print_ >= progress_interval;
  }

  void print(int done, long long tokens, long long failed_host_checks, unsigned long long device_wrong) {
    last_print_ = clock::now();
    const double seconds = std::max(std::chrono::duration<double>(last_print_ - start_).count(), 1e-9);
    std::printf("[epg-demo] %s: step %d/%d, rank 0: %lld tokens, %lld failed host checks, %llu wrong elements "
                "(device), %.1f steps/s, %.0f tokens/s\n",
                variant_, done, steps_, tokens, failed_host_checks, device_wrong, done / seconds, tokens / seconds);
    std::fflush(stdout);  // under mpirun stdout is a pipe: without a flush the line comes at exit
  }

 private:
  const char* variant_;
  int steps_;
  clock::time_point start_ = clock::now(), last_print_ = start_;
};

double free_mib() {
  std::size_t free_bytes = 0, total = 0;
  EPG_CHECK_CUDA(cudaMemGetInfo(&free_bytes, &total));
  return static_cast<double>(free_bytes) / (1 << 20);
}

// The load statistics of a variant's session, gathered to rank 0 and printed: tokens each rank
// received, the ranks' and the experts' imbalance (max / mean). Collective.
void print_load(comm::mpi_context& mpi, const comm::ep_session& session, const char* variant) {
  const comm::ep_session::expert_load load = session.read_expert_load();
  const int ranks = mpi.size(), per_rank = static_cast<int>(load.tokens.size());
  std::vector<unsigned long long> received(static_cast<std::size_t>(ranks)),
      experts(static_cast<std::size_t>(ranks) * per_rank);
  const unsigned long long mine = load.received;
  EPG_CHECK_MPI(MPI_Gather(&mine, 1, MPI_UNSIGNED_LONG_LONG, received.data(), 1, MPI_UNSIGNED_LONG_LONG, 0, mpi.world()));
  std::vector<unsigned long long> tokens(load.tokens.begin(), load.tokens.end());
  EPG_CHECK_MPI(MPI_Gather(tokens.data(), per_rank, MPI_UNSIGNED_LONG_LONG, experts.data(), per_rank,
                           MPI_UNSIGNED_LONG_LONG, 0, mpi.world()));
  if (mpi.rank() != 0) return;
  auto imbalance = [](const std::vector<unsigned long long>& v, std::size_t* hottest) {
    const auto top = std::max_element(v.begin(), v.end());
    *hottest = static_cast<std::size_t>(top - v.begin());
    double sum = 0;
    for (unsigned long long x : v) sum += static_cast<double>(x);
    return sum > 0 ? static_cast<double>(*top) * static_cast<double>(v.size()) / sum : 0.0;
  };
  std::size_t hot_rank = 0, hot_expert = 0;
  const double rank_ratio = imbalance(received, &hot_rank), expert_ratio = imbalance(experts, &hot_expert);
  std::printf("[epg-demo] load (%s): received tokens per rank:", variant);
  for (int r = 0; r < ranks; ++r) std::printf(" %d:%llu", r, received[static_cast<std::size_t>(r)]);
  std::printf("; rank imbalance (max/mean) %.2f (rank %zu); expert imbalance %.2f (expert %zu, %llu tokens)\n",
              rank_ratio, hot_rank, expert_ratio, hot_expert, experts[hot_expert]);
  std::fflush(stdout);
}

variant_result run_variant(comm::mpi_context& mpi, comm::nccl_comm_ref nccl, const demo::options& o,
                           bool zero_copy) {
  const bool expert_major = o.rows == demo::layout::expert_major;
  const sim::problem& p = o.problem;
  comm::ep_session session(nccl, demo::session_config(o));  // the config demo::validate checked
  const std::size_t elem = comm::element_size(p.dtype);
  const std::size_t rows = static_cast<std::size_t>(p.max_tokens);
  sim::batch_storage buffers(p);
  comm::device_buffer wrong(sizeof(unsigned long long)),
      staged(zero_copy || expert_major ? 0 : static_cast<std::size_t>(p.ep_size) * rows * p.hidden * elem);
  EPG_CHECK_CUDA(cudaMemset(wrong.get(), 0, sizeof(unsigned long long)));

  graph::step_spec spec;
  spec.dispatch = buffers.dispatch_args();
  spec.combine = buffers.combine_args();
  spec.experts = sim::reference_expert_stage(p);
  if (expert_major) {
    comm::expert_major_spec form;
    form.form = o.masked ? comm::expert_major_form::masked : comm::expert_major_form::packed;
    form.copy_rows = !o.indexed;
    spec.expert_major = kernels::permute_args{form, 1};  // make_config: payload 1 = the router weights
  } else {
    spec.expert_output = zero_copy ? session.combine_region() : staged.get();
  }
  if (mpi.rank() == 0)
    spec.log = [](const std::string& line) {
      std::printf("[epg-demo] %s\n", line.c_str());
      std::fflush(stdout);
    };

  graph::stream stream;
  graph::step_graph step(graph::plan_step(session, spec), stream);
  if (mpi.rank() == 0) {
    const int L = session.config().domain_size;  // --domain-size 0 resolved to NCCL's NVLink team
    std::printf("[epg-demo] NVLink domains: %d of %d rank(s)%s\n", p.ep_size / L, L,
                p.domain_size == 0 ? " (--domain-size 0: NCCL's NVLink team)" : "");
    std::printf("[epg-demo] step graph:\n%s", step.plan().explain().c_str());
    std::fflush(stdout);
  }

  graph::event start, stop, checked;
  std::vector<double> times;
  std::vector<unsigned char> host(rows * p.hidden * elem);
  long long failures = 0, tokens = 0, host_checked = 0;
  const auto watchdog = std::chrono::duration<double>(o.watchdog_seconds);
  const auto deadline = std::chrono::duration<double>(o.deadline_seconds);
  EPG_CHECK_CUDA(cudaDeviceSynchronize());
  const double free_before = free_mib();
  double lowest_free = free_before;
  const char* em_name = o.masked ? (o.indexed ? "expert-major (masked, indexed rows)" : "expert-major (masked)")
                                 : (o.indexed ? "expert-major (packed, indexed rows)" : "expert-major (packed)");
  const char* name = expert_major ? em_name
                     : zero_copy  ? "zero-copy"
                                  : "staged (prepare-combine)";
  progress_meter progress(name, o.steps);
  for (int s = 0; s < o.steps; ++s) {
    const std::uint64_t step_id = static_cast<std::uint64_t>(s) + (zero_copy ? 0 : 1u << 24);
    const bool host_check = s % o.host_check_every == 0 || s == o.steps - 1;
    if (mpi.rank() == o.stall_rank && s == o.stall_step) {
      std::fprintf(stderr, "[epg-demo] rank %d: injected stall at step %d (no more replays)\n", mpi.rank(), s);
      std::this_thread::sleep_for(3 * std::max(watchdog, deadline) + std::chrono::seconds(5));
      return {"stalled (fault injection)"};  // the peers' watchdog or deadline ends the job first
    }
    EPG_CHECK_CUDA(sim::generate_batch(p, mpi.rank(), step_id, buffers.inputs(), stream.get()));
    if (host_check && o.watchdog_seconds > 0) {
      stream.sync();
      // Time the step, not a peer still checking the previous one; never wait forever.
      if (!mpi.barrier_within(o.watchdog_seconds)) {
        std::fprintf(stderr, "%s\n", graph::describe_hang(session, s, watchdog).c_str());
        MPI_Abort(MPI_COMM_WORLD, 3);
      }
    }
    start.record(stream);
    EPG_CHECK_CUDA(step.replay(stream));
    stop.record(stream);
    EPG_CHECK_CUDA(sim::check_output(p, mpi.rank(), step_id, buffers.output(), wrong.as<unsigned long long>(), stream.get()));
    checked.record(stream);
    if (const auto stalled = graph::watch_step(session, checked, s, watchdog)) {
      std::fprintf(stderr, "%s\n", stalled->c_str());
      MPI_Abort(MPI_COMM_WORLD, 3);
    }
    const int T = sim::token_count(p, mpi.rank(), step_id);
    tokens += T;
    if (host_check) {
      times.push_back(1000.0 * graph::event::elapsed_ms(start, stop));
      session.check_faults();
      lowest_free = std::min(lowest_free, free_mib());
      ++host_checked;
      EPG_CHECK_CUDA(cudaMemcpy(host.data(), buffers.output(), static_cast<std::size_t>(T) * p.hidden * elem,
                                cudaMemcpyDeviceToHost));
      const long long wrong_elements = sim::count_wrong(p, step_id, mpi.rank(), host.data());
      if (wrong_elements) {
        ++failures;
        std::fprintf(stderr, "[epg-demo] rank %d step %d (T=%d): %lld of %zu output elements differ\n", mpi.rank(),
                     s, T, wrong_elements, static_cast<std::size_t>(T) * p.hidden);
      }
    }
    if (mpi.rank() == 0 && progress.due(s + 1)) {
      // watch_step waited for `checked`, so the device count is final for this step.
      unsigned long long wrong_so_far = 0;
      EPG_CHECK_CUDA(cudaMemcpy(&wrong_so_far, wrong.get(), sizeof wrong_so_far, cudaMemcpyDeviceToHost));
      progress.print(s + 1, tokens, failures, wrong_so_far);
    }
  }
  unsigned long long device_wrong = 0;
  EPG_CHECK_CUDA(cudaMemcpy(&device_wrong, wrong.get(), sizeof device_wrong, cudaMemcpyDeviceToHost));
  print_load(mpi, session, name);
  variant_result r{name, o.steps};
  EPG_CHECK_MPI(MPI_Allreduce(&failures, &r.failures, 1, MPI_LONG_LONG, MPI_SUM, mpi.world()));
  EPG_CHECK_MPI(MPI_Allreduce(&host_checked, &r.host_checked, 1, MPI_LONG_LONG, MPI_SUM, mpi.world()));
  EPG_CHECK_MPI(MPI_Allreduce(&tokens, &r.tokens, 1, MPI_LONG_LONG, MPI_SUM, mpi.world()));
  EPG_CHECK_MPI(MPI_Allreduce(&device_wrong, &r.device_wrong, 1, MPI_UNSIGNED_LONG_LONG, MPI_SUM, mpi.world()));
  const double growth = free_before - lowest_free;
  EPG_CHECK_MPI(MPI_Allreduce(&growth, &r.mem_growth_mib, 1, MPI_DOUBLE, MPI_MAX, mpi.world()));
  std::nth_element(times.begin(), times.begin() + times.size() / 2, times.end());
  double median = times[times.size() / 2];
  EPG_CHECK_MPI(MPI_Allreduce(&median, &r.median_us, 1, MPI_DOUBLE, MPI_MAX, mpi.world()));
  return r;
}

int run(comm::mpi_context& mpi, int argc, char** argv) {
  std::string help;
  std::optional<demo::options> parsed;
  // Every option, the rank-count ones included (the rank count comes from MPI), is checked
  // before the GPU check: a bad option is reported as such on any machine, once.
  if (!cli::passes_on_every_rank(mpi, "epg-demo", [&] {
        parsed = demo::parse_options(std::vector<std::string>(argv + 1, argv + argc), &help);
        if (parsed) demo::validate(*parsed, mpi.size());
      }))
    return 1;
  if (!parsed) {
    if (mpi.rank() == 0) std::cout << help;
    return 0;
  }
  demo::options o = *parsed;
  o.problem.ep_size = mpi.size();

  std::optional<comm::nccl_comm> joined = cli::join_gpus(mpi, "epg-demo");
  if (!joined) return 2;
  comm::nccl_comm& nccl = *joined;
  if (mpi.rank() == 0) {
    const std::string host_checks = o.host_check_every == 1
                                        ? std::string("every step")
                                        : "steps 1, " + std::to_string(1 + o.host_check_every) + ", ... and the last";
    const char* quantize = !o.problem.quantize                                           ? ""
                           : o.problem.scales == kernels::fp8::scale_format::ue8m0 ? ", dispatch quantizes to FP8 (UE8M0 scales)"
                                                                                   : ", dispatch quantizes to FP8 (fp32 scales)";
    const char* combine = o.problem.combine == kernels::combine_precision::fp8    ? ", FP8 combine"
                          : o.problem.combine == kernels::combine_precision::bf16 ? ", bf16 combine"
                                                                                  : "";
    std::printf("[epg-demo] %d ranks, max %d tokens/rank, hidden %d, top-%d of %d experts, %s%s%s, %s routing, %d "
                "steps; device check: every step, host check: %s\n",
                mpi.size(), o.problem.max_tokens, o.problem.hidden, o.problem.top_k, o.problem.num_experts,
                std::string(comm::to_string(o.problem.dtype)).c_str(), quantize, combine,
                std::string(sim::to_string(o.problem.dist)).c_str(), o.steps, host_checks.c_str());
    std::fflush(stdout);
  }

  std::vector<variant_result> results;
  if (o.rows == demo::layout::expert_major) {
    results.push_back(run_variant(mpi, nccl, o, false));
  } else {
    // A reduced combine needs prepare-combine (demo::parse_options refused --variant zero-copy).
    const bool reduced = o.problem.combine != kernels::combine_precision::exact;
    if (reduced && o.which == demo::variant::both && mpi.rank() == 0)
      std::printf("[epg-demo] --combine-precision %s: the zero-copy variant is skipped (prepare-combine reduces "
                  "the rows)\n",
                  o.problem.combine == kernels::combine_precision::fp8 ? "fp8" : "bf16");
    if (o.which != demo::variant::staged && !reduced) results.push_back(run_variant(mpi, nccl, o, true));
    if (o.which != demo::variant::zero_copy) results.push_back(run_variant(mpi, nccl, o, false));
  }

  long long failures = 0;
  if (mpi.rank() == 0) {
    cudaDeviceProp prop{};
    EPG_CHECK_CUDA(cudaGetDeviceProperties(&prop, mpi.local_rank()));
    std::printf("\n%-26s %8s %8s %9s %12s %13s %10s %12s\n", "variant", "steps", "host-chk", "failures",
                "device-wrong", "tokens", "median us", "mem growth");
    for (const auto& r : results) {
      std::printf("%-26s %8d %8lld %9lld %12llu %13lld %10.1f %9.1f MiB\n", r.name, r.steps, r.host_checked,
                  r.failures, r.device_wrong, r.tokens, r.median_us, r.mem_growth_mib);
      failures += r.failures + static_cast<long long>(r.device_wrong > 0);
    }
    std::printf("GPU: %s x %d. %s\n", prop.name, mpi.size(),
                failures ? "FAILED: outputs differ from the reference"
                         : "All outputs match the reference exactly (device check every step, host check as sampled).");
  }
  EPG_CHECK_MPI(MPI_Bcast(&failures, 1, MPI_LONG_LONG, 0, mpi.world()));
  return failures ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  return epgraph::cli::mpi_main(argc, argv, "epg-demo", run);
}
