// Reduction operators shared by the host and CUDA executors: identity, combine, and the
// accumulator type (double for floating-point sums, so long sums stay accurate and the result does
// not depend on how the work was split).
#pragma once

#include <cstdint>
#include <limits>
#include <type_traits>

#include <dp/config.hpp>
#include <dp/expr/functional.hpp>

namespace dp::inline DP_ABI::detail {

/// A sum's type: floats keep theirs, other integers sum to int64, uint64 to uint64 (int64 holds
/// neither its values past 2^63 nor their sums).
template <class T>
using sum_result_t =
    std::conditional_t<std::is_floating_point_v<T> || std::is_same_v<T, std::uint64_t>, T, std::int64_t>;

struct sum_reduce {
  static constexpr const char* name = "sum";
  template <class T>
  using acc_t = std::conditional_t<std::is_floating_point_v<T>, double, sum_result_t<T>>;
  template <class A>
  DP_HOST_DEVICE DP_FORCEINLINE static A identity() {
    return A(0);
  }
  template <class A>
  DP_HOST_DEVICE DP_FORCEINLINE static A combine(A a, A b) {
    return wrapping(a, b, plus_fn{});  // integer sums wrap, as PyTorch's do
  }
};

struct max_reduce {
  static constexpr const char* name = "max";
  template <class T>
  using acc_t = T;
  template <class A>
  DP_HOST_DEVICE DP_FORCEINLINE static A identity() {
    if constexpr (std::numeric_limits<A>::has_infinity) {
      return -std::numeric_limits<A>::infinity();
    } else {
      return std::numeric_limits<A>::lowest();
    }
  }
  template <class A>
  DP_HOST_DEVICE DP_FORCEINLINE static A combine(A a, A b) {
    return (a > b) | (a != a) ? a : b;  // NaN wins, as in PyTorch
  }
};

struct min_reduce {
  static constexpr const char* name = "min";
  template <class T>
  using acc_t = T;
  template <class A>
  DP_HOST_DEVICE DP_FORCEINLINE static A identity() {
    if constexpr (std::numeric_limits<A>::has_infinity) {
      return std::numeric_limits<A>::infinity();
    } else {
      return std::numeric_limits<A>::max();
    }
  }
  template <class A>
  DP_HOST_DEVICE DP_FORCEINLINE static A combine(A a, A b) {
    return (a < b) | (a != a) ? a : b;
  }
};

}  // namespace dp::inline DP_ABI::detail
