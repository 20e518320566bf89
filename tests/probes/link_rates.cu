// Probe (not a test; run by scripts/gpu-check.sh's "links" stage or by hand): how many bytes a
// given number of SMs moves over NVLink between two GPUs, with nothing else running. The
// kernels' limits are argued against these numbers (docs/perf-notes.md, v26):
//   - stores to the peer (dispatch's push) or loads from it (combine's pull);
//   - one way (GPU 0 only) or both ways at once (GPU 0 and GPU 1 toward each other), the
//     traffic every all-to-all and every skewed step mixes;
//   - the grid: G working CTAs, one per SM, each moving an equal contiguous chunk as a
//     dispatch CTA does (--balance static), or taking 64 KiB items from a shared counter until
//     none are left (dynamic); with --spread 2 only every second CTA of a 2G grid works (the
//     others exit at once), so that two working CTAs never sit on neighbouring SMs;
//   - --local-copy: each store to the peer also stores the same bytes into this GPU's memory,
//     as dispatch stores a token's row to its own rank beside the peers.
// One process, CUDA peer access, no NCCL and no MPI. Every kernel waits on a flag in mapped
// host memory until all CTAs of every kernel are resident, so both directions start together;
// times come from %globaltimer on each GPU (first CTA start to last CTA end). Each row is the
// median of --repeats runs; the copy is checked once per configuration.
// CSV on stdout: op,direction,balance,local_copy,ctas,spread,threads,mbytes,us,GBps,GBps_per_cta,
// cta_us_min,cta_us_max,adjacent_sm_pairs,checked (GBps: the bytes to or from the peer only).
#include <cuda_runtime_api.h>

#include <algorithm>
#include <boost/program_options.hpp>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace {

constexpr int kUnroll = 4;             // independent 16-byte loads in flight per thread, as dispatch's push
constexpr int kShared = 120 * 1024;    // dynamic shared memory that keeps one CTA per SM
constexpr std::size_t kItemVecs = 4096;  // a dynamic work item: 64 KiB

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(e));
}

struct probe_args {
  const uint4* src;
  uint4* dst;
  uint4* local;                     // --local-copy: a second destination in this GPU's memory, else null
  std::size_t vecs;                 // 16-byte vectors the working CTAs move together
  unsigned long long* next_item;    // --balance dynamic: the shared item counter (0 at launch), else null
  int spread;                       // CTA b works iff b % spread == 0
  volatile int* ready;              // mapped host memory: one word per working CTA, 1 once resident
  const volatile int* go;           // mapped host memory: set by the host once all are resident
  unsigned long long* stamps;       // per working CTA: start, end (ns, %globaltimer)
  int* smids;                       // per working CTA
};

__device__ unsigned long long global_ns() {
  unsigned long long t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}

__global__ void __launch_bounds__(1024) copy_kernel(probe_args a) {
  if (blockIdx.x % a.spread) return;
  const int w = blockIdx.x / a.spread, G = gridDim.x / a.spread;
  if (threadIdx.x == 0) {
    a.ready[w] = 1;  // a word per CTA: atomics on host memory are not atomic across PCIe
    __threadfence_system();
    while (*a.go == 0) {
    }
  }
  __syncthreads();
  const unsigned long long start = global_ns();
  const auto copy = [&](std::size_t begin, std::size_t end) {
    for (std::size_t base = begin + threadIdx.x; base < end; base += blockDim.x * kUnroll) {
      uint4 x[kUnroll];
#pragma unroll
      for (int u = 0; u < kUnroll; ++u)
        if (base + u * blockDim.x < end) x[u] = a.src[base + u * blockDim.x];
#pragma unroll
      for (int u = 0; u < kUnroll; ++u)
        if (base + u * blockDim.x < end) {
          a.dst[base + u * blockDim.x] = x[u];
          if (a.local) a.local[base + u * blockDim.x] = x[u];
        }
    }
  };
  if (!a.next_item) {
    const std::size_t chunk = (a.vecs + G - 1) / G, begin = std::min(a.vecs, w * chunk);
    copy(begin, std::min(a.vecs, begin + chunk));
  } else {
    // Thread 0 takes the next item while the CTA copies the current one.
    __shared__ std::size_t item[2];
    const std::size_t items = (a.vecs + kItemVecs - 1) / kItemVecs;
    if (threadIdx.x == 0) item[0] = atomicAdd(a.next_item, 1ull);
    __syncthreads();
    for (int k = 0;; k ^= 1) {
      const std::size_t i = item[k];
      if (i >= items) break;
      if (threadIdx.x == 0) item[k ^ 1] = atomicAdd(a.next_item, 1ull);
      copy(i * kItemVecs, std::min(a.vecs, (i + 1) * kItemVecs));
      __syncthreads();
    }
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    a.stamps[2 * w] = start;
    a.stamps[2 * w + 1] = global_ns();
    unsigned int sm;
    asm volatile("mov.u32 %0, %%smid;" : "=r"(sm));
    a.smids[w] = static_cast<int>(sm);
  }
}

__global__ void fill_kernel(uint4* p, std::size_t n, unsigned int seed) {
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::size_t>(gridDim.x) * blockDim.x) {
    const auto v = static_cast<unsigned int>(i) * 2654435761u ^ seed;
    p[i] = make_uint4(v, v + 1, v + 2, v + 3);
  }
}

__global__ void count_mismatches(const uint4* a, const uint4* b, std::size_t n, unsigned long long* bad) {
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::size_t>(gridDim.x) * blockDim.x) {
    const uint4 x = a[i], y = b[i];
    if (x.x != y.x || x.y != y.y || x.z != y.z || x.w != y.w) atomicAdd(bad, 1ull);
  }
}

// One GPU's buffers: what it sends (src) and what it receives (dst), and its kernel's record.
struct gpu_side {
  int device = 0;
  uint4* src = nullptr;
  uint4* dst = nullptr;
  uint4* local = nullptr;                // --local-copy's second destination
  unsigned long long* next_item = nullptr;  // device
  unsigned long long* stamps = nullptr;  // device
  int* smids = nullptr;                  // device
  unsigned long long* bad = nullptr;     // device
  cudaStream_t stream = nullptr;
};

struct run_result {
  double us = 0, cta_us_min = 0, cta_us_max = 0;
  int adjacent_pairs = 0;  // working CTAs on SMs 2i and 2i+1 (one TPC, if ids pair that way)
};

struct config {
  bool store, two_way, dynamic, local_copy;
  int ctas, spread, threads;
};

// One run: GPU 0's kernel, and GPU 1's toward it when two_way, started together; what GPU 0 saw.
run_result run_once(std::vector<gpu_side>& gpus, const config& c, std::size_t vecs, volatile int* flags, int max_ctas) {
  const bool store = c.store, two_way = c.two_way;
  const int ctas = c.ctas, spread = c.spread, threads = c.threads;
  volatile int* go = flags;  // then max_ctas ready words per GPU
  *go = 0;
  const int active = two_way ? 2 : 1;
  for (int i = 0; i < 2 * max_ctas; ++i) flags[1 + i] = 0;
  for (int s = 0; s < active; ++s) {
    gpu_side& me = gpus[s];
    const gpu_side& peer = gpus[1 - s];
    check(cudaSetDevice(me.device), "cudaSetDevice");
    // A store writes the peer's dst from my src; a load reads the peer's src into my dst.
    if (c.dynamic) check(cudaMemsetAsync(me.next_item, 0, sizeof(unsigned long long), me.stream), "cudaMemsetAsync");
    probe_args a{store ? me.src : peer.src,     store ? peer.dst : me.dst,
                 store && c.local_copy ? me.local : nullptr,
                 vecs,  c.dynamic ? me.next_item : nullptr, spread, flags + 1 + s * max_ctas, go, me.stamps, me.smids};
    copy_kernel<<<ctas * spread, threads, kShared, me.stream>>>(a);
    check(cudaGetLastError(), "copy_kernel launch");
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  const auto resident = [&] {
    int n = 0;
    for (int s = 0; s < active; ++s)
      for (int w = 0; w < ctas; ++w) n += flags[1 + s * max_ctas + w];
    return n;
  };
  while (resident() < active * ctas) {
    if (std::chrono::steady_clock::now() > deadline)
      throw std::runtime_error("the CTAs did not all become resident in 10 s (a grid larger than the GPU?)");
    std::this_thread::yield();
  }
  *go = 1;
  run_result r;
  for (int s = 0; s < active; ++s) {
    check(cudaSetDevice(gpus[s].device), "cudaSetDevice");
    check(cudaStreamSynchronize(gpus[s].stream), "copy_kernel");
  }
  std::vector<unsigned long long> stamps(2 * ctas);
  std::vector<int> smids(ctas);
  check(cudaSetDevice(gpus[0].device), "cudaSetDevice");
  check(cudaMemcpy(stamps.data(), gpus[0].stamps, stamps.size() * sizeof(stamps[0]), cudaMemcpyDeviceToHost), "stamps");
  check(cudaMemcpy(smids.data(), gpus[0].smids, smids.size() * sizeof(int), cudaMemcpyDeviceToHost), "smids");
  unsigned long long first = ~0ull, last = 0;
  double lo = 1e30, hi = 0;
  for (int w = 0; w < ctas; ++w) {
    first = std::min(first, stamps[2 * w]);
    last = std::max(last, stamps[2 * w + 1]);
    const double d = (stamps[2 * w + 1] - stamps[2 * w]) * 1e-3;
    lo = std::min(lo, d);
    hi = std::max(hi, d);
  }
  std::sort(smids.begin(), smids.end());
  for (std::size_t i = 1; i < smids.size(); ++i) r.adjacent_pairs += smids[i] == smids[i - 1] + 1 && smids[i] % 2 == 1;
  r.us = (last - first) * 1e-3;
  r.cta_us_min = lo;
  r.cta_us_max = hi;
  return r;
}

// Whether every destination written holds its source's bytes; then zeroes it for the next check.
bool copy_checked(std::vector<gpu_side>& gpus, const config& c, std::size_t vecs) {
  const auto matches = [&](const gpu_side& holder, uint4* written, const uint4* source) {
    check(cudaSetDevice(holder.device), "cudaSetDevice");
    check(cudaMemset(holder.bad, 0, sizeof(unsigned long long)), "cudaMemset");
    count_mismatches<<<264, 512>>>(written, source, vecs, holder.bad);
    unsigned long long bad = 1;
    check(cudaMemcpy(&bad, holder.bad, sizeof(bad), cudaMemcpyDeviceToHost), "count_mismatches");
    check(cudaMemset(written, 0, vecs * sizeof(uint4)), "cudaMemset");
    check(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
    return bad == 0;
  };
  bool ok = true;
  for (int s = 0; s < (c.two_way ? 2 : 1); ++s) {
    gpu_side &me = gpus[s], &peer = gpus[1 - s];
    ok = ok && (c.store ? matches(peer, peer.dst, me.src) : matches(me, me.dst, peer.src));
    if (c.store && c.local_copy) ok = ok && matches(me, me.local, me.src);
  }
  return ok;
}

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::size_t at = 0;
  while (at <= s.size()) {
    const std::size_t comma = std::min(s.find(',', at), s.size());
    out.push_back(s.substr(at, comma - at));
    at = comma + 1;
  }
  return out;
}

int to_int(const std::string& s, const char* option, int least, int most) {
  std::size_t used = 0;
  int v = 0;
  try {
    v = std::stoi(s, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != s.size() || s.empty() || v < least || v > most)
    throw std::invalid_argument(std::string("--") + option + ": '" + s + "' is not a whole number from " +
                                std::to_string(least) + " to " + std::to_string(most));
  return v;
}

}  // namespace

int main(int argc, char** argv) try {
  namespace po = boost::program_options;
  std::string ctas_list = "8,16,20,24,32,64", spreads_list = "1", ops_list = "store,load",
              directions_list = "one-way,two-way", balance_list = "static,dynamic", local_list = "off";
  int threads = 512, repeats = 5, mbytes = 128;
  po::options_description desc("link_rates: NVLink bytes per second by SM count, op and direction (GPUs 0 and 1)");
  desc.add_options()("help", "this text")("ctas", po::value(&ctas_list)->default_value(ctas_list), "working CTAs (list)")(
      "spread", po::value(&spreads_list)->default_value(spreads_list), "every n-th CTA of an n x ctas grid works (list)")(
      "op", po::value(&ops_list)->default_value(ops_list), "store (to the peer), load (from the peer) (list)")(
      "direction", po::value(&directions_list)->default_value(directions_list), "one-way, two-way (list)")(
      "balance", po::value(&balance_list)->default_value(balance_list),
      "static (equal chunks per CTA), dynamic (64 KiB items from a shared counter) (list)")(
      "local-copy", po::value(&local_list)->default_value(local_list),
      "off, on: stores also write the bytes into this GPU's memory (list)")(
      "threads", po::value(&threads)->default_value(threads), "threads per CTA (a multiple of 32, at most 1024)")(
      "mbytes", po::value(&mbytes)->default_value(mbytes), "MiB each GPU moves per run")(
      "repeats", po::value(&repeats)->default_value(repeats), "runs per configuration (the median is printed)");
  po::variables_map vm;
  po::store(po::command_line_parser(argc, argv).options(desc).run(), vm);
  po::notify(vm);
  if (vm.count("help")) {
    std::printf("%s", (std::ostringstream{} << desc).str().c_str());
    return 0;
  }
  if (threads < 32 || threads > 1024 || threads % 32) throw std::invalid_argument("--threads: a multiple of 32 up to 1024");
  if (repeats < 1 || repeats > 1000) throw std::invalid_argument("--repeats: 1 to 1000");
  if (mbytes < 1 || mbytes > 4096) throw std::invalid_argument("--mbytes: 1 to 4096");
  std::vector<int> ctas, spreads;
  for (const auto& s : split(ctas_list)) ctas.push_back(to_int(s, "ctas", 1, 1024));
  for (const auto& s : split(spreads_list)) spreads.push_back(to_int(s, "spread", 1, 8));
  for (const auto& s : split(ops_list))
    if (s != "store" && s != "load") throw std::invalid_argument("--op: store or load, not '" + s + "'");
  for (const auto& s : split(directions_list))
    if (s != "one-way" && s != "two-way") throw std::invalid_argument("--direction: one-way or two-way, not '" + s + "'");
  for (const auto& s : split(balance_list))
    if (s != "static" && s != "dynamic") throw std::invalid_argument("--balance: static or dynamic, not '" + s + "'");
  for (const auto& s : split(local_list))
    if (s != "off" && s != "on") throw std::invalid_argument("--local-copy: off or on, not '" + s + "'");

  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) count = 0;  // no driver: no GPU
  if (count < 2) {
    std::printf("SKIPPED: link_rates needs two GPUs (%d visible)\n", count);
    return 77;
  }
  int sms = 0;
  check(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0), "cudaDeviceGetAttribute");
  const std::size_t vecs = static_cast<std::size_t>(mbytes) << 16;  // MiB / 16 bytes
  int max_ctas = 0;  // working CTAs at most (ready words per GPU)
  for (int c : ctas) max_ctas = std::max(max_ctas, c);

  std::vector<gpu_side> gpus(2);
  for (int s = 0; s < 2; ++s) {
    gpu_side& g = gpus[s];
    g.device = s;
    check(cudaSetDevice(s), "cudaSetDevice");
    check(cudaDeviceEnablePeerAccess(1 - s, 0), "cudaDeviceEnablePeerAccess");
    check(cudaFuncSetAttribute(copy_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kShared), "cudaFuncSetAttribute");
    check(cudaMalloc(&g.src, vecs * sizeof(uint4)), "cudaMalloc src");
    check(cudaMalloc(&g.dst, vecs * sizeof(uint4)), "cudaMalloc dst");
    check(cudaMemset(g.dst, 0, vecs * sizeof(uint4)), "cudaMemset dst");
    if (local_list.find("on") != std::string::npos) {
      check(cudaMalloc(&g.local, vecs * sizeof(uint4)), "cudaMalloc local");
      check(cudaMemset(g.local, 0, vecs * sizeof(uint4)), "cudaMemset local");
    }
    check(cudaMalloc(&g.next_item, sizeof(unsigned long long)), "cudaMalloc next_item");
    check(cudaMalloc(&g.stamps, 2 * sizeof(unsigned long long) * max_ctas), "cudaMalloc stamps");
    check(cudaMalloc(&g.smids, sizeof(int) * max_ctas), "cudaMalloc smids");
    check(cudaMalloc(&g.bad, sizeof(unsigned long long)), "cudaMalloc bad");
    check(cudaStreamCreateWithFlags(&g.stream, cudaStreamNonBlocking), "cudaStreamCreate");
    fill_kernel<<<264, 512>>>(g.src, vecs, 0x9e3779b9u * (s + 1));
    check(cudaDeviceSynchronize(), "fill_kernel");
  }
  int* flags = nullptr;  // [0]: go, then max_ctas ready words per GPU
  check(cudaHostAlloc(&flags, (1 + 2 * max_ctas) * sizeof(int), cudaHostAllocMapped | cudaHostAllocPortable),
        "cudaHostAlloc");
  int* flags_dev = nullptr;
  check(cudaHostGetDevicePointer(&flags_dev, flags, 0), "cudaHostGetDevicePointer");
  if (flags_dev != flags) throw std::runtime_error("mapped host memory needs unified addressing");

  cudaDeviceProp prop{};
  check(cudaGetDeviceProperties(&prop, 0), "cudaGetDeviceProperties");
  std::fprintf(stderr, "link_rates: %s, %d SMs, %d MiB per GPU per run, %d threads, median of %d\n", prop.name, sms,
               mbytes, threads, repeats);
  std::printf("op,direction,balance,local_copy,ctas,spread,threads,mbytes,us,GBps,GBps_per_cta,cta_us_min,cta_us_max,"
              "adjacent_sm_pairs,checked\n");
  std::vector<config> configs;
  for (const auto& op : split(ops_list))
    for (const auto& direction : split(directions_list))
      for (const auto& balance : split(balance_list))
        for (const auto& local : split(local_list))
          for (int spread : spreads)
            for (int n : ctas) {
              if (n * spread > sms)  // every CTA must be resident at once
                std::fprintf(stderr, "link_rates: %d x %d CTAs skipped: GPU 0 has %d SMs\n", n, spread, sms);
              else if (local == "off" || op == "store")  // a load has one destination
                configs.push_back({op == "store", direction == "two-way", balance == "dynamic", local == "on", n, spread,
                                   threads});
            }
  for (const config& cfg : configs) {
    // The first run lands in zeroed destinations and is checked; the rest only timed.
    std::vector<run_result> runs{run_once(gpus, cfg, vecs, flags, max_ctas)};
    const bool ok = copy_checked(gpus, cfg, vecs);
    for (int i = 1; i < repeats; ++i) runs.push_back(run_once(gpus, cfg, vecs, flags, max_ctas));
    std::sort(runs.begin(), runs.end(), [](const run_result& a, const run_result& b) { return a.us < b.us; });
    const run_result& m = runs[runs.size() / 2];
    const double gbps = static_cast<double>(vecs) * 16 / (m.us * 1e3);
    std::printf("%s,%s,%s,%s,%d,%d,%d,%d,%.1f,%.1f,%.2f,%.1f,%.1f,%d,%s\n", cfg.store ? "store" : "load",
                cfg.two_way ? "two-way" : "one-way", cfg.dynamic ? "dynamic" : "static", cfg.local_copy ? "on" : "off",
                cfg.ctas, cfg.spread, cfg.threads, mbytes, m.us, gbps, gbps / cfg.ctas, m.cta_us_min, m.cta_us_max,
                m.adjacent_pairs, ok ? "ok" : "MISMATCH");
    std::fflush(stdout);
    if (!ok) return 1;
  }
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "link_rates: %s\n", e.what());
  return 2;
}
