#pragma once
// epgraph's one exception type and the checks that raise it.
//
// Constructors and planning calls throw epgraph::comm::error; launch paths return a
// cudaError_t instead (they run inside graph capture and behind C boundaries), and
// destructors report to stderr and never throw.
//
// MPI is an optional part (epgraph::mpi): EPG_CHECK_MPI lives in epgraph/comm/mpi_error.hpp, so
// this header, and with it every header of epgraph::comm, kernels and graph, needs no <mpi.h>.

#include <cuda_runtime_api.h>
#include <nccl.h>

#include <source_location>
#include <stdexcept>
#include <string>
#include <string_view>

#include "epgraph/comm/requires_cxx20.hpp"

namespace epgraph::comm {

/// Which library the failing call belongs to; `peer` when another rank failed, left, or did
/// not arrive in time (this rank is healthy), `device` for faults recorded by the kernels.
enum class error_domain { cuda, nccl, mpi, config, device, peer, internal };

std::string_view to_string(error_domain d) noexcept;

/// A failed call: what was called, its code and message, and what the user should do. The text
/// ends with where it was raised, [file:line]: a file of epgraph's source tree as a path from its
/// root (modules/comm/src/ep_config.cpp), any other file by its name only, never an absolute
/// path of the machine that built it.
class error : public std::runtime_error {
 public:
  error(error_domain domain, std::string call, int code, std::string message, std::string hint,
        std::source_location where = std::source_location::current());

  error_domain domain() const noexcept { return domain_; }
  const std::string& call() const noexcept { return call_; }
  int code() const noexcept { return code_; }
  const std::string& message() const noexcept { return message_; }
  const std::string& hint() const noexcept { return hint_; }

 private:
  error_domain domain_;
  std::string call_;
  int code_;
  std::string message_;
  std::string hint_;
};

/// An invalid configuration or argument: names the field and the allowed range. The error's
/// location is the caller's (the check that failed), not this helper's.
[[noreturn]] void throw_config_error(std::string field, std::string message, std::string hint = {},
                                     std::source_location where = std::source_location::current());

namespace detail {
[[noreturn]] void throw_cuda(cudaError_t code, const char* call, std::source_location where);
[[noreturn]] void throw_nccl(ncclResult_t code, const char* call, std::source_location where);
// For destructors: print, never throw.
void report_cuda(cudaError_t code, const char* call) noexcept;
void report_nccl(ncclResult_t code, const char* call) noexcept;
}  // namespace detail

}  // namespace epgraph::comm

// Check macros: the stringified call goes into the error, so messages name what failed.
#define EPG_CHECK_CUDA(expr)                                                                 \
  do {                                                                                       \
    cudaError_t epg_status_ = (expr);                                                        \
    if (epg_status_ != cudaSuccess)                                                          \
      ::epgraph::comm::detail::throw_cuda(epg_status_, #expr, std::source_location::current()); \
  } while (0)

#define EPG_CHECK_NCCL(expr)                                                                 \
  do {                                                                                       \
    ncclResult_t epg_status_ = (expr);                                                       \
    if (epg_status_ != ncclSuccess)                                                          \
      ::epgraph::comm::detail::throw_nccl(epg_status_, #expr, std::source_location::current()); \
  } while (0)

// Destructor variants: report and carry on.
#define EPG_REPORT_CUDA(expr) ::epgraph::comm::detail::report_cuda((expr), #expr)
#define EPG_REPORT_NCCL(expr) ::epgraph::comm::detail::report_nccl((expr), #expr)

// Code built with epgraph::mpi (which defines EPGRAPH_HAS_MPI) keeps getting EPG_CHECK_MPI and
// <mpi.h> from this header, as before MPI became optional; new code includes mpi_error.hpp.
#if defined(EPGRAPH_HAS_MPI)
#include "epgraph/comm/mpi_error.hpp"
#endif
