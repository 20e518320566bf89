#pragma once
#include "epgraph/comm/requires_cxx20.hpp"
// The one owning-handle template behind every RAII type of epgraph (streams, events, graphs,
// device and symmetric memory, windows, device and NCCL communicators, the MPI lifetime), so
// move, release and reset are written once. Host only; never throws.
//
//   struct traits {
//     using value_type = ...;                          // trivially copyable; value_type{} is "empty"
//     static bool empty(const value_type&) noexcept;
//     static void destroy(value_type&) noexcept;       // reports failures, never throws
//   };

#include <type_traits>
#include <utility>

namespace epgraph::comm {

template <class Traits>
class unique_handle {
 public:
  using value_type = typename Traits::value_type;
  static_assert(std::is_trivially_copyable_v<value_type>, "handles are plain values");

  constexpr unique_handle() noexcept = default;
  constexpr explicit unique_handle(value_type value) noexcept : value_(value) {}
  ~unique_handle() { reset(); }
  unique_handle(const unique_handle&) = delete;
  unique_handle& operator=(const unique_handle&) = delete;
  unique_handle(unique_handle&& other) noexcept : value_(other.release()) {}
  unique_handle& operator=(unique_handle&& other) noexcept {
    if (this != &other) {
      reset();
      value_ = other.release();
    }
    return *this;
  }

  const value_type& get() const noexcept { return value_; }
  /// Gives up ownership: the caller destroys what is returned.
  [[nodiscard]] value_type release() noexcept { return std::exchange(value_, value_type{}); }
  /// Destroys what is owned (if anything) and owns nothing.
  void reset() noexcept {
    if (!Traits::empty(value_)) Traits::destroy(value_);
    value_ = value_type{};
  }
  explicit operator bool() const noexcept { return !Traits::empty(value_); }

 private:
  value_type value_{};
};

}  // namespace epgraph::comm
