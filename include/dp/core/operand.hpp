// What may appear in a tensor expression. Kept apart from the node types so that dp::tensor can
// name the concept before the nodes exist.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>

#include <dp/config.hpp>
#include <dp/core/error.hpp>

namespace dp::inline DP_ABI {

struct dynamic_extents;
template <class T, class Extents = dynamic_extents>
class tensor;
template <class Node>
class expr;

namespace detail {
/// Specialised for every type that can be an operand of an expression (tensors, expressions,
/// nn parameters, traced variables). `node_type` is what the operand becomes inside a node and
/// `make(x)` converts it.
template <class X>
struct operand_adapter;
}  // namespace detail

/// A tensor, a lazy expression or anything else that can be an operand of a tensor expression
/// (scalars are operands too, but not expressions).
template <class X>
concept expression = requires { typename detail::operand_adapter<std::remove_cvref_t<X>>::node_type; };

/// A plain number used as an operand (converted to the other operand's element type).
template <class X>
concept scalar = std::is_arithmetic_v<std::remove_cvref_t<X>>;

namespace detail {
/// Whether a number of type S, converted to elements of type T, would lose its fraction.
template <class T, class S>
inline constexpr bool truncating_scalar =
    std::is_integral_v<T> && !std::is_same_v<T, bool> && std::is_floating_point_v<S>;
#define DP_TRUNCATING_SCALAR_MESSAGE                                                                                \
  "dp: a floating-point number with an integer tensor would be converted to the tensor's integer type, losing its " \
  "fraction (x * 0.5 would give 0, x < 0.5 would mean x < 0); convert the tensor first (dp::cast<float>(x) * "      \
  "0.5f), or write the number as an integer"

/// Whether the number `s` has a value of type T: always, unless both are integer types (not bool)
/// and `s` lies outside T's range (std::in_range, written out: it does not take the char types).
template <class T, class S>
DP_HOST_DEVICE constexpr bool integer_fits(S s) {
  if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool> && std::is_integral_v<S> &&
                !std::is_same_v<S, bool>) {
    using lo_t = std::intmax_t;
    using hi_t = std::uintmax_t;
    if constexpr (std::is_signed_v<S>) {
      if (s < 0) {
        return static_cast<lo_t>(s) >= static_cast<lo_t>(std::numeric_limits<T>::min());
      }
    }
    return static_cast<hi_t>(s) <= static_cast<hi_t>(std::numeric_limits<T>::max());
  } else {
    return true;
  }
}

/// `s` as an element of type T. An integer T cannot hold is a value_error: it would wrap silently
/// (a uint8 tensor times 300 gave 48; PyTorch refuses it too).
template <class T, class S>
T scalar_as(S s) {
  static_assert(!truncating_scalar<T, S>, DP_TRUNCATING_SCALAR_MESSAGE);
  if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>) {
    DP_CHECK(integer_fits<T>(s), value_error, "dp: the number ", +s, " does not fit the tensor's integer elements (",
             +std::numeric_limits<T>::min(), " to ", +std::numeric_limits<T>::max(), ") and would wrap; ",
             sizeof(T) < 8 ? "convert the tensor to a wider type first (dp::cast<std::int64_t>(x))"
                           : "no 64-bit integer holds it: convert the tensor to double, or change the number");
  }
  if constexpr (std::is_floating_point_v<T> && std::is_floating_point_v<S> && sizeof(S) > sizeof(T)) {
    // A finite number past T's range is undefined to convert: it rounds to T's largest value below
    // the halfway point to the next power of two, to infinity from there, as IEEE arithmetic does.
    if (std::isfinite(s) && std::fabs(s) > static_cast<S>(std::numeric_limits<T>::max())) {
      constexpr int p = std::numeric_limits<T>::digits, e = std::numeric_limits<T>::max_exponent;
      const S to_infinity = std::ldexp(S(1) - std::ldexp(S(1), -(p + 1)), e);
      const T big = std::fabs(s) >= to_infinity ? std::numeric_limits<T>::infinity() : std::numeric_limits<T>::max();
      return s < 0 ? -big : big;
    }
  }
  return static_cast<T>(s);
}

/// scalar_as for a value every element takes (fill, full): a finite number that becomes infinite
/// in T is refused too, as torch.full refuses it (in an expression it is infinite, as in PyTorch).
template <class T, class S>
T fill_value_as(S s) {
  const T v = scalar_as<T>(s);
  if constexpr (std::is_floating_point_v<T> && std::is_floating_point_v<S>) {
    DP_CHECK(!std::isfinite(s) || std::isfinite(v), value_error, "dp: fill: the number ", s,
             " is beyond the largest value of the tensor's floating-point elements (", std::numeric_limits<T>::max(),
             ") and would become infinite; fill a tensor of a wider type, or fill with infinity if that is meant");
  }
  return v;
}

/// Evaluates `e` into `dst` (defined in exec/assign.hpp). `dst` is allocated when it is undefined.
template <class T, class E>
void assign(tensor<T>& dst, const E& e);
}  // namespace detail

}  // namespace dp::inline DP_ABI
