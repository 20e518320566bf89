#pragma once
#include "epgraph/comm/requires_cxx20.hpp"
// Picking this rank's GPU. Local; not capture-safe.

namespace epgraph::comm {

/// Throws unless `local_rank` names a GPU of this node; then makes it current.
void select_device(int local_rank);

}  // namespace epgraph::comm
