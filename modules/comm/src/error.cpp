#include "epgraph/comm/error.hpp"

#include <cstdio>
#include <sstream>
#include <string_view>

#ifndef EPGRAPH_SOURCE_DIR  // built without it (another build system): print file names only
#define EPGRAPH_SOURCE_DIR ""
#endif

namespace epgraph::comm {

std::string_view to_string(error_domain d) noexcept {
  switch (d) {
    case error_domain::cuda: return "CUDA";
    case error_domain::nccl: return "NCCL";
    case error_domain::mpi: return "MPI";
    case error_domain::config: return "config";
    case error_domain::device: return "device";
    case error_domain::peer: return "peer";
    case error_domain::internal: return "internal";
  }
  return "unknown";
}

namespace {
// Where an error was raised, without the path of the machine that built it (binaries are copied
// to GPU machines, and a build path means nothing to a user there): a file of epgraph's source
// tree as a path from its root, any other absolute path by its file name only. EPGRAPH_SOURCE_DIR
// ("<checkout>/") is defined by the build.
std::string_view shown_file(std::string_view file) {
  constexpr std::string_view tree = EPGRAPH_SOURCE_DIR;
  if (!tree.empty() && file.starts_with(tree)) return file.substr(tree.size());
  if (file.starts_with('/')) return file.substr(file.find_last_of('/') + 1);
  return file;
}

std::string format(error_domain domain, const std::string& call, int code, const std::string& message,
                   const std::string& hint, const std::source_location& where) {
  std::ostringstream out;
  out << "epgraph: " << to_string(domain) << " error in " << call;
  if (domain != error_domain::config) out << " (code " << code << ")";
  out << ": " << message;
  if (!hint.empty()) out << " -- " << hint;
  out << " [" << shown_file(where.file_name()) << ":" << where.line() << "]";
  return out.str();
}

std::string hint_for_cuda(cudaError_t code) {
  switch (code) {
    case cudaErrorNoDevice:
    case cudaErrorInsufficientDriver:
      return "epgraph needs an NVIDIA GPU (sm_90) with a working driver on every rank";
    case cudaErrorMemoryAllocation:
      return "free GPU memory or reduce max_tokens_per_rank / hidden size / payloads";
    case cudaErrorInvalidDevice:
      return "run at most one rank per GPU (mpirun -np <= number of local GPUs)";
    case cudaErrorStreamCaptureUnsupported:
    case cudaErrorStreamCaptureInvalidated:
      return "this call is not capture-safe: do it before beginning stream capture";
    default:
      return {};
  }
}

std::string hint_for_nccl(ncclResult_t code) {
  switch (code) {
    case ncclInvalidUsage:
      return "check that every rank calls collectives in the same order and that the NVLink "
             "domain supports symmetric memory (see NCCL_DEBUG=WARN output)";
    case ncclSystemError:
    case ncclUnhandledCudaError:
      return "rerun with NCCL_DEBUG=WARN for the underlying cause";
    case ncclInProgress:
      return "the communicator is non-blocking (ncclConfig_t::blocking = 0 or NCCL_COMM_BLOCKING=0), which "
             "epgraph does not support: pass a blocking one (NCCL's default)";
    default:
      return {};
  }
}
}  // namespace

error::error(error_domain domain, std::string call, int code, std::string message, std::string hint,
             std::source_location where)
    : std::runtime_error(format(domain, call, code, message, hint, where)),
      domain_(domain),
      call_(std::move(call)),
      code_(code),
      message_(std::move(message)),
      hint_(std::move(hint)) {}

void throw_config_error(std::string field, std::string message, std::string hint, std::source_location where) {
  throw error(error_domain::config, std::move(field), 0, std::move(message), std::move(hint), where);
}

namespace detail {
void throw_cuda(cudaError_t code, const char* call, std::source_location where) {
  throw error(error_domain::cuda, call, static_cast<int>(code),
              std::string(cudaGetErrorName(code)) + ": " + cudaGetErrorString(code), hint_for_cuda(code),
              where);
}
void throw_nccl(ncclResult_t code, const char* call, std::source_location where) {
  throw error(error_domain::nccl, call, static_cast<int>(code), ncclGetErrorString(code), hint_for_nccl(code),
              where);
}
void report_cuda(cudaError_t code, const char* call) noexcept {
  if (code != cudaSuccess) std::fprintf(stderr, "epgraph: %s failed during teardown: %s\n", call, cudaGetErrorString(code));
}
void report_nccl(ncclResult_t code, const char* call) noexcept {
  if (code != ncclSuccess) std::fprintf(stderr, "epgraph: %s failed during teardown: %s\n", call, ncclGetErrorString(code));
}
}  // namespace detail
}  // namespace epgraph::comm
