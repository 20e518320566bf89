// epg-bench: times dispatch and combine as CUDA-graph replays (CUDA events, median/p10/p90
// of the slowest rank) against three baselines on the same routing and bytes, in one process.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <iostream>
#include <memory>
#include <numeric>
#include <optional>

#include "baselines.hpp"
#include "bench.hpp"
#include "cli.hpp"
#include "epgraph/comm/error.hpp"
#include "epgraph/comm/mpi_context.hpp"
#include "epgraph/graph/step.hpp"
#include "epgraph/kernels/expert_major.hpp"
#include "epgraph/sim/device.hpp"
#include "epgraph/sim/reference.hpp"

namespace {
using namespace epgraph;
using bench::stats;

// One graph holding `ops_per_graph` back-to-back ops (the enqueue functions in turn, so
// input sets rotate), as in a real step graph of many layers: replays are timed with CUDA
// events and divided by ops_per_graph, so the host's launch rate is not what is measured.
class replayer {
 public:
  replayer(graph::stream_ref s, const std::vector<std::function<cudaError_t(cudaStream_t)>>& steps, int ops_per_graph)
      : stream_(s), ops_(ops_per_graph) {
    graph::capture_scope capture(s);
    for (int i = 0; i < ops_; ++i) EPG_CHECK_CUDA(steps[i % steps.size()](s.get()));
    exec_ = capture.end().instantiate();
  }
  // Times `replays` replays after `warmup`; per-op statistics of the slowest rank.
  stats time(const comm::mpi_context& mpi, int warmup, int replays) {
    for (int i = 0; i < warmup; ++i) EPG_CHECK_CUDA(exec_.launch(stream_));
    stream_.sync();
    mpi.barrier();
    std::vector<graph::event> marks(static_cast<std::size_t>(replays) + 1);
    marks[0].record(stream_);
    for (int i = 0; i < replays; ++i) {
      EPG_CHECK_CUDA(exec_.launch(stream_));
      marks[i + 1].record(stream_);
    }
    marks.back().sync();
    std::vector<double> us;
    for (int i = 0; i < replays; ++i) us.push_back(1000.0 * graph::event::elapsed_ms(marks[i], marks[i + 1]) / ops_);
    std::sort(us.begin(), us.end());
    double mine[3] = {us[us.size() / 10], us[us.size() / 2], us[us.size() * 9 / 10]}, worst[3];
    EPG_CHECK_MPI(MPI_Allreduce(mine, worst, 3, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD));
    return {worst[0], worst[1], worst[2]};
  }

 private:
  graph::stream_ref stream_;
  int ops_;
  graph::graph_exec exec_;
};

double max_over_ranks(double v) {
  double most = 0;
  EPG_CHECK_MPI(MPI_Allreduce(&v, &most, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD));
  return most;
}

double mean_over_ranks(double v) {
  double sum = 0;
  int n = 1;
  EPG_CHECK_MPI(MPI_Allreduce(&v, &sum, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD));
  EPG_CHECK_MPI(MPI_Comm_size(MPI_COMM_WORLD, &n));
  return sum / n;
}

bench::result run_config(const comm::mpi_context& mpi, comm::nccl_comm_ref nccl, const bench::options& o,
                         const bench::shape& shape, int tokens, const std::string& payload, const std::string& gpu,
                         const std::string& nccl_version) {
  const int ep = mpi.size(), me = mpi.rank();
  const sim::problem p = bench::make_problem(shape, ep, tokens, o.seed);
  const comm::ep_config cfg = bench::session_config(o, shape, ep, tokens, payload);
  const auto phase = [&](const char* what) {
    if (o.trace) std::fprintf(stderr, "[rank %d] T=%d L=%d %s: %s\n", me, tokens, cfg.domain_size, payload.c_str(), what);
  };
  phase("session");
  comm::ep_session session(nccl, cfg);
  phase("planning");

  // Fresh routing for this configuration; two input sets (same routing) rotate.
  const auto routes = sim::draw_routing(p, 0);
  const auto expect = sim::expect_dispatch(p, routes);
  comm::device_buffer num_tokens(4), ids(std::size_t(tokens) * shape.top_k * 4),
      output(std::size_t(tokens) * shape.hidden * 2);
  EPG_CHECK_CUDA(cudaMemcpy(num_tokens.get(), &tokens, 4, cudaMemcpyHostToDevice));
  EPG_CHECK_CUDA(cudaMemcpy(ids.get(), routes.ids[me].data(), routes.ids[me].size() * 4, cudaMemcpyHostToDevice));
  std::vector<std::unique_ptr<comm::device_buffer>> inputs;
  std::vector<kernels::dispatch_op> dispatches;
  double bytes_per_token = std::size_t(shape.top_k) * 4;  // the top-k ids travel too
  for (const auto& spec : cfg.payloads) bytes_per_token += spec.row_bytes;
  for (int set = 0; set < 2; ++set) {
    kernels::dispatch_args args{num_tokens.as<std::int32_t>(), ids.as<std::int32_t>(), {}, std::nullopt};
    for (const auto& spec : cfg.payloads) {
      inputs.push_back(std::make_unique<comm::device_buffer>(std::size_t(tokens) * spec.row_bytes));
      EPG_CHECK_CUDA(sim::fill_pattern(inputs.back()->get(), tokens, spec.row_bytes, 17 * set + me, nullptr));
      args.payloads.push_back({inputs.back()->get(), spec.row_bytes});
    }
    dispatches.emplace_back(session, args);
  }
  kernels::combine_op combine(session, {num_tokens.as<std::int32_t>(), output.get(), comm::element_type::bf16});

  graph::stream s;
  phase("first dispatch");
  EPG_CHECK_CUDA(dispatches[0].run(s.get()));  // routing state for combine
  EPG_CHECK_CUDA(sim::fill_pattern(session.combine_region(), 1, session.layout().combine.bytes, 99, s.get()));
  s.sync();

  bench::result r;
  r.ep = ep;
  r.domain_size = session.config().domain_size;  // 0 resolved to the NVLink team
  r.tokens = tokens;
  r.hidden = shape.hidden;
  r.top_k = shape.top_k;
  r.experts = shape.experts;
  r.payload = payload;
  r.routing = std::string(sim::to_string(shape.dist));
  r.gpu = gpu;
  r.nccl_version = nccl_version;
  r.ctas = shape.ctas;
  r.expert_slots = cfg.expert_slots_per_rank;
  r.threads = o.threads;
  r.ops_per_graph = o.ops_per_graph;
  r.replays = o.replays;
  r.deadline_seconds = o.deadline_seconds;
  r.programmatic = !o.plain_launch;
  r.remote_ctas = o.remote_ctas;
  r.dispatch_bytes_per_token = bytes_per_token;
  r.combine_bytes_per_token = double(shape.hidden) * 2;
  phase("dispatch graph");
  replayer ours_d(s, {[&](cudaStream_t st) { return dispatches[0].run(st); },
                      [&](cudaStream_t st) { return dispatches[1].run(st); }}, o.ops_per_graph);
  phase("dispatch timing");
  r.dispatch = ours_d.time(mpi, o.warmup, o.replays);
  phase("combine graph");
  replayer ours_c(s, {[&](cudaStream_t st) { return combine.run(st); }}, o.ops_per_graph);
  phase("combine timing");
  r.combine = ours_c.time(mpi, o.warmup, o.replays);
  phase("baselines");

  // Exact pair traffic of this routing. Dispatch: me -> d; combine: rows flow back d -> me.
  const bench::step_bytes traffic = bench::step_bytes_of(expect.counts, me, static_cast<std::size_t>(bytes_per_token),
                                                         static_cast<std::size_t>(shape.hidden) * 2);
  const bench::pair_bytes &d_bytes = traffic.dispatch, &c_bytes = traffic.combine;
  double wire_d = 0, logical_d = 0;
  for (int d = 0; d < ep; ++d) {
    logical_d += static_cast<double>(d_bytes.recv[d]);
    if (d != me) wire_d += static_cast<double>(d_bytes.send[d]);
  }
  const double row_ratio = double(shape.hidden) * 2 / bytes_per_token;
  r.wire_dispatch_bytes = mean_over_ranks(wire_d);
  r.logical_dispatch_bytes = mean_over_ranks(logical_d);
  r.wire_combine_bytes = r.wire_dispatch_bytes * row_ratio;
  r.logical_combine_bytes = mean_over_ranks(logical_d * row_ratio);
  r.model_wire_dispatch_bytes =
      tokens * bench::expected_destinations(ep, shape.experts, shape.top_k) * (ep - 1) / ep * bytes_per_token;
  for (int receiver = 0; receiver < ep; ++receiver) {  // every rank sees the whole routing
    double in = 0;
    for (int sender = 0; sender < ep; ++sender)
      if (sender != receiver) in += expect.counts[receiver][sender] * bytes_per_token;
    r.busiest_dispatch_ingress_bytes = std::max(r.busiest_dispatch_ingress_bytes, in);
  }
  r.busiest_combine_egress_bytes = r.busiest_dispatch_ingress_bytes * row_ratio;

  {
    bench::nccl_alltoallv nd(nccl, d_bytes), nc(nccl, c_bytes);
    replayer rd(s, {[&](cudaStream_t st) { return nd.run(st); }}, o.ops_per_graph);
    r.nccl_dispatch = rd.time(mpi, o.warmup, o.replays);
    replayer rc(s, {[&](cudaStream_t st) { return nc.run(st); }}, o.ops_per_graph);
    r.nccl_combine = rc.time(mpi, o.warmup, o.replays);
  }
  {
    bench::lsa_alltoall ld(nccl, d_bytes, shape.ctas, o.threads);
    replayer rd(s, {[&](cudaStream_t st) { return ld.run(st); }}, o.ops_per_graph);
    r.lsa_dispatch = rd.time(mpi, o.warmup, o.replays);
  }
  {
    bench::lsa_alltoall lc(nccl, c_bytes, shape.ctas, o.threads);
    replayer rc(s, {[&](cudaStream_t st) { return lc.run(st); }}, o.ops_per_graph);
    r.lsa_combine = rc.time(mpi, o.warmup, o.replays);
  }
  {
    bench::lsa_pull lp(nccl, c_bytes.recv, shape.ctas, o.threads);  // the rows it dispatched to d
    replayer rp(s, {[&](cudaStream_t st) { return lp.run(st); }}, o.ops_per_graph);
    r.lsa_pull_combine = rp.time(mpi, o.warmup, o.replays);
  }
  // Several domains: the exchanges' own traffic, alone (fixed slabs to and from every rank of
  // another domain), so a row splits dispatch and combine into their kernel and NCCL parts.
  const int L = session.config().domain_size;
  if (L < ep) {
    const auto max_tokens = static_cast<std::size_t>(cfg.max_tokens_per_rank);
    bench::pair_bytes sd, sc;
    for (int d = 0; d < ep; ++d) {
      const bool remote = d / L != me / L;
      sd.send.push_back(remote ? max_tokens * std::size_t(bytes_per_token) : 0);
      sc.send.push_back(remote ? max_tokens * std::size_t(shape.hidden) * 2 : 0);
    }
    sd.recv = sd.send;
    sc.recv = sc.send;
    r.slab_dispatch_bytes = double(std::accumulate(sd.send.begin(), sd.send.end(), std::size_t{0}));
    r.slab_combine_bytes = double(std::accumulate(sc.send.begin(), sc.send.end(), std::size_t{0}));
    bench::nccl_alltoallv nd(nccl, sd), nc(nccl, sc);
    replayer rd(s, {[&](cudaStream_t st) { return nd.run(st); }}, o.ops_per_graph);
    r.slab_dispatch = rd.time(mpi, o.warmup, o.replays);
    replayer rc(s, {[&](cudaStream_t st) { return nc.run(st); }}, o.ops_per_graph);
    r.slab_combine = rc.time(mpi, o.warmup, o.replays);
  }
  {
    // Expert-major permute and un-permute, alone, on the rows the last dispatch delivered.
    const kernels::permute_op permute(session, bench::timed_permute(cfg));
    const kernels::unpermute_op unpermute(session, permute, true);
    phase("permute timing");
    replayer rp(s, {[&](cudaStream_t st) { return permute.run(st); }}, o.ops_per_graph);
    r.permute = rp.time(mpi, o.warmup, o.replays);
    phase("un-permute timing");
    replayer ru(s, {[&](cudaStream_t st) { return unpermute.run(st); }}, o.ops_per_graph);
    r.unpermute = ru.time(mpi, o.warmup, o.replays);
  }
  {
    // The same permute with indexed rows, its buffers made after the copying one's are freed.
    kernels::permute_args indexed_args = bench::timed_permute(cfg);
    indexed_args.spec.copy_rows = false;
    const kernels::permute_op indexed(session, indexed_args);
    phase("indexed permute timing");
    replayer ri(s, {[&](cudaStream_t st) { return indexed.run(st); }}, o.ops_per_graph);
    r.permute_indexed = ri.time(mpi, o.warmup, o.replays);
    // Bytes: every received payload row read once and written once per local expert it has;
    // the un-permute reads those expert rows and writes one bf16 row per received token.
    double received = 0, payload_row = 0;
    for (int src = 0; src < ep; ++src) received += expect.counts[me][src];
    for (const auto& spec : cfg.payloads) payload_row += double(spec.row_bytes);
    double rows = 0;
    for (const auto& slot : sim::expect_expert_major(p, routes, comm::default_placement(cfg), me)) rows += double(slot.size());
    const double out_row = double(shape.hidden) * double(comm::element_size(cfg.combine_type));
    const double permute_bytes = received * payload_row + rows * (payload_row + 3 * 4 + 4);
    r.permute_bytes = mean_over_ranks(permute_bytes);
    r.busiest_permute_bytes = max_over_ranks(permute_bytes);
    // Indexed (a lower bound, counted apart from the copy's): each received token's top-k ids
    // read and its entries' rows written (int32), each row's origin, weight and receive index
    // written.
    r.permute_indexed_bytes = mean_over_ranks(received * double(shape.top_k) * 8 + rows * (3 * 4 + 4 + 4));
    const double unpermute_bytes = (rows + received) * out_row;
    r.unpermute_bytes = mean_over_ranks(unpermute_bytes);
    r.busiest_unpermute_bytes = max_over_ranks(unpermute_bytes);
  }
  if (o.fp8_combine && shape.hidden % 16 == 0) {
    // The FP8 combine on the same routing: prepare-combine quantizes bf16 rows drawn like hidden
    // states into the combine region once, then combine pulls them (timed), and the
    // prepare-combine is timed alone.
    const std::size_t hidden = std::size_t(shape.hidden), rows = std::size_t(ep) * cfg.max_tokens_per_rank;
    const std::size_t fp8_row = hidden + (hidden + 127) / 128 * 4;
    comm::device_buffer expert_rows(rows * hidden * 2);
    const auto values = bench::bf16_rows(static_cast<int>(rows), shape.hidden, o.seed + 7 + static_cast<std::uint64_t>(me));
    EPG_CHECK_CUDA(cudaMemcpy(expert_rows.get(), values.data(), values.size() * 2, cudaMemcpyHostToDevice));
    const kernels::prepare_combine_op prepare(session, expert_rows.get(), kernels::combine_precision::fp8);
    const kernels::combine_op fp8_combine(
        session, {num_tokens.as<std::int32_t>(), output.get(), comm::element_type::bf16, kernels::combine_precision::fp8});
    EPG_CHECK_CUDA(prepare.run(s.get()));
    s.sync();
    phase("fp8 combine timing");
    replayer rc(s, {[&](cudaStream_t st) { return fp8_combine.run(st); }}, o.ops_per_graph);
    r.fp8_combine = rc.time(mpi, o.warmup, o.replays);
    r.wire_fp8_combine_bytes = r.wire_combine_bytes * double(fp8_row) / double(hidden * 2);
    phase("fp8 prepare-combine timing");
    replayer rp(s, {[&](cudaStream_t st) { return prepare.run(st); }}, o.ops_per_graph);
    r.fp8_prepare = rp.time(mpi, o.warmup, o.replays);
    double received = 0;
    for (int src = 0; src < ep; ++src) received += expect.counts[me][src];
    r.fp8_prepare_bytes = mean_over_ranks(received * double(hidden * 2 + fp8_row));
  }
  if (payload == "fp8" && o.quantize && shape.hidden % 8 == 0) {  // the quantizer's row rule
    // Quantizing inside dispatch against quantizing first: the same session and routing; the
    // separate quantize writes set 0's fp8 inputs, which dispatch 0 then sends.
    const std::size_t hidden = cfg.payloads[0].row_bytes, blocks = (hidden + 127) / 128;
    comm::device_buffer rows(std::size_t(tokens) * hidden * 2);
    const auto values = bench::bf16_rows(tokens, static_cast<int>(hidden), o.seed + static_cast<std::uint64_t>(me));
    EPG_CHECK_CUDA(cudaMemcpy(rows.get(), values.data(), values.size() * 2, cudaMemcpyHostToDevice));
    kernels::dispatch_args args{num_tokens.as<std::int32_t>(), ids.as<std::int32_t>(),
                                {{}, {}, {inputs[2]->get(), cfg.payloads[2].row_bytes}},
                                kernels::fp8_dispatch{rows.get(), 0, 1, kernels::fp8::scale_format::fp32}};
    const kernels::dispatch_op quantizing(session, args);
    const kernels::quantize_rows_op quantize(session, {num_tokens.as<std::int32_t>(), tokens, static_cast<int>(hidden),
                                                       rows.get(), inputs[0]->get(), inputs[1]->get(),
                                                       kernels::fp8::scale_format::fp32});
    phase("quantize timing");
    replayer rq(s, {[&](cudaStream_t st) { return quantize.run(st); }}, o.ops_per_graph);
    r.quantize = rq.time(mpi, o.warmup, o.replays);
    r.quantize_bytes = double(tokens) * double(hidden * 3 + blocks * 4);
    phase("quantizing dispatch timing");
    replayer rd(s, {[&](cudaStream_t st) { return quantizing.run(st); }}, o.ops_per_graph);
    r.quantized_dispatch = rd.time(mpi, o.warmup, o.replays);
    phase("quantize + dispatch timing");
    replayer rp(s, {[&](cudaStream_t st) {
                  const cudaError_t e = quantize.run(st);
                  return e != cudaSuccess ? e : dispatches[0].run(st);
                }},
                o.ops_per_graph);
    r.quantize_then_dispatch = rp.time(mpi, o.warmup, o.replays);
  }
  r.workspace = bench::workspace_parts(session.layout(), cfg);
  phase("check_faults");
  session.check_faults();  // throws on every rank if any rank saw a fault: then there is no row
  r.checked = "faults-only";  // the timed outputs are not compared with a reference
  return r;
}

int run(comm::mpi_context& mpi, int argc, char** argv) {
  std::string help;
  auto parsed = bench::parse_options(std::vector<std::string>(argv + 1, argv + argc), &help);
  if (!parsed) {
    if (mpi.rank() == 0) std::cout << help;
    return 0;
  }
  const bench::options& o = *parsed;
  // Every configuration is valid before the first one runs.
  if (!cli::passes_on_every_rank(mpi, "epg-bench", [&] { bench::check_sweep(o, mpi.size()); })) return 1;
  std::optional<comm::nccl_comm> joined = cli::join_gpus(mpi, "epg-bench");
  if (!joined) return 2;
  comm::nccl_comm& nccl = *joined;
  // Only rank 0 writes; every rank stops together when it cannot (here, before the sweep, if
  // --out is unusable; later, after the rows written so far).
  std::optional<bench::report_files> files;
  const auto on_rank0 = [&](const std::function<void()>& write) {
    return cli::passes_on_every_rank(mpi, "epg-bench", [&] {
      if (mpi.rank() == 0) write();
    });
  };
  if (!on_rank0([&] { files.emplace(o.out); })) return 1;
  cudaDeviceProp prop{};
  EPG_CHECK_CUDA(cudaGetDeviceProperties(&prop, mpi.local_rank()));
  const std::string nccl_version = bench::nccl_version_string(comm::loaded_nccl_version());
  const std::vector<bench::shape> shapes = bench::sweep_shapes(o);
  const std::size_t total = shapes.size() * o.payloads.size() * o.tokens.size();
  if (mpi.rank() == 0) {
    std::string ctas;
    for (int c : o.ctas) {
      if (!ctas.empty()) ctas += ',';
      ctas += std::to_string(c);
    }
    std::printf("epg-bench: %d x %s, NCCL %s, %zu configurations, %s CTAs x %d threads; per-op time of %d graph "
                "replays of %d ops each (median of the slowest rank); columns: epg-bench --help\n",
                mpi.size(), prop.name, nccl_version.c_str(), total, ctas.c_str(), o.threads, o.replays, o.ops_per_graph);
    bench::print_header();
  }
  const auto start = std::chrono::steady_clock::now();
  std::size_t done = 0;
  for (const auto& shape : shapes)
    for (const auto& payload : o.payloads)
      for (int tokens : o.tokens) {
        const bench::result r = run_config(mpi, nccl, o, shape, tokens, payload, prop.name, nccl_version);
        ++done;
        if (mpi.rank() == 0) {
          const std::chrono::duration<double> elapsed = std::chrono::steady_clock::now() - start;
          bench::print_row(r, done, total, elapsed.count());
        }
        if (!on_rank0([&] { files->add(r); })) return 1;
      }
  if (!on_rank0([&] { files->finish(); })) return 1;
  if (mpi.rank() == 0) std::printf("wrote %s and %s\n", files->csv_path().c_str(), files->json_path().c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return epgraph::cli::mpi_main(argc, argv, "epg-bench", run); }
