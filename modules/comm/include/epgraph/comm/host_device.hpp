#pragma once
#include "epgraph/comm/requires_cxx20.hpp"
// EPGRAPH_HD marks the few functions that host and device code both call (layout arithmetic,
// the collective-word protocol, the dispatch work split), so that one definition serves both
// and host unit tests cover what the kernels run. A plain host compiler sees nothing.
#if defined(__CUDACC__)
#define EPGRAPH_HD __host__ __device__
#else
#define EPGRAPH_HD
#endif
