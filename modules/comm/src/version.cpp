#include "epgraph/comm/version.hpp"

namespace epgraph {

// Compiled into the library, so it reports the library's version, not the caller's headers'.
std::string_view version() noexcept { return header_version; }

}  // namespace epgraph
