// Operators and element functions on tensors and expressions. Each is constrained by a concept, so
// an operand of the wrong type produces one short diagnostic, and each returns a lazy dp::expr.
#pragma once

#include <cmath>
#include <type_traits>
#include <utility>

#include <dp/config.hpp>
#include <dp/core/operand.hpp>
#include <dp/expr/functional.hpp>
#include <dp/expr/node.hpp>

namespace dp::inline DP_ABI {

/// Operands of a binary operator: two expressions, or an expression and a scalar.
template <class L, class R>
concept binary_operands = (expression<L> && (expression<R> || scalar<R>)) || (scalar<L> && expression<R>);

namespace detail {

template <class F, class L, class R>
auto binary(F f, const L& l, const R& r) {
  if constexpr (scalar<L>) {
    auto nb = to_node(r);
    auto na = scalar_as_node<decltype(nb)>(l);
    return expr{make_binary_node(f, std::move(na), std::move(nb))};
  } else if constexpr (scalar<R>) {
    auto na = to_node(l);
    auto nb = scalar_as_node<decltype(na)>(r);
    return expr{make_binary_node(f, std::move(na), std::move(nb))};
  } else {
    return expr{make_binary_node(f, node_of<L>(to_node(l)), node_of<R>(to_node(r)))};
  }
}

template <class F, class X>
auto unary(F f, const X& x) {
  return expr{make_unary_node(f, node_of<X>(to_node(x)))};
}

template <class X>
using value_of = typename node_of<X>::value_type;

template <class X>
inline constexpr bool floating_v = std::is_floating_point_v<value_of<X>>;
/// Whether X is an expression of floating-point values (a plain number is not).
template <class X>
constexpr bool floating_operand() {
  if constexpr (expression<X>) {
    return floating_v<X>;
  } else {
    return false;
  }
}
template <class X>
inline constexpr bool floating_operand_v = floating_operand<X>();

}  // namespace detail

#define DP_DETAIL_BINARY_OPERATOR(SYMBOL, OP)    \
  template <class L, class R>                    \
    requires binary_operands<L, R>               \
  auto operator SYMBOL(const L& l, const R& r) { \
    return detail::binary(detail::OP{}, l, r);   \
  }
DP_DETAIL_BINARY_OPERATOR(+, add_op)
DP_DETAIL_BINARY_OPERATOR(*, mul_op)
DP_DETAIL_BINARY_OPERATOR(/, div_op)
DP_DETAIL_BINARY_OPERATOR(<, less_op)
DP_DETAIL_BINARY_OPERATOR(<=, less_equal_op)
DP_DETAIL_BINARY_OPERATOR(>, greater_op)
DP_DETAIL_BINARY_OPERATOR(>=, greater_equal_op)
DP_DETAIL_BINARY_OPERATOR(==, equal_op)
DP_DETAIL_BINARY_OPERATOR(!=, not_equal_op)
DP_DETAIL_BINARY_OPERATOR(&&, logical_and_op)
DP_DETAIL_BINARY_OPERATOR(||, logical_or_op)
#undef DP_DETAIL_BINARY_OPERATOR

template <class L, class R>
  requires binary_operands<L, R>
auto operator-(const L& l, const R& r) {
  using result = decltype(detail::binary(detail::sub_op{}, l, r));
  static_assert(!std::is_same_v<detail::value_of<result>, bool>,
                "dp: a - b of bool values gives their exclusive or (true - true is false, false - true is true); "
                "write a != b for it, or subtract a number type (dp::cast<int>(a) - b)");
  return detail::binary(detail::sub_op{}, l, r);
}

template <expression X>
auto operator-(const X& x) {
  static_assert(!std::is_same_v<detail::value_of<X>, bool>,
                "dp: -x of a bool tensor gives x unchanged (a bool cannot be negative); use !x for the logical not, "
                "or negate a number type (-dp::cast<int>(x))");
  return detail::unary(detail::neg_op{}, x);
}
template <expression X>
auto operator+(const X& x) {
  return detail::unary(detail::cast_op<detail::value_of<X>>{}, x);
}
template <expression X>
auto operator!(const X& x) {
  return detail::unary(detail::logical_not_op{}, x);
}

#define DP_DETAIL_FLOAT_FUNCTION(NAME)                                                        \
  template <expression X>                                                                     \
  auto NAME(const X& x) {                                                                     \
    static_assert(detail::floating_v<X>, "dp: " #NAME                                         \
                                         "(x) needs floating-point values; convert integers " \
                                         "with dp::cast<float>(x)");                          \
    return detail::unary(detail::NAME##_op{}, x);                                             \
  }
DP_DETAIL_FLOAT_FUNCTION(exp)
DP_DETAIL_FLOAT_FUNCTION(log)
DP_DETAIL_FLOAT_FUNCTION(sin)
DP_DETAIL_FLOAT_FUNCTION(cos)
DP_DETAIL_FLOAT_FUNCTION(tanh)
DP_DETAIL_FLOAT_FUNCTION(sqrt)
DP_DETAIL_FLOAT_FUNCTION(rsqrt)
DP_DETAIL_FLOAT_FUNCTION(sigmoid)
DP_DETAIL_FLOAT_FUNCTION(relu)
DP_DETAIL_FLOAT_FUNCTION(gelu)
#undef DP_DETAIL_FLOAT_FUNCTION

/// |x|
template <expression X>
auto abs(const X& x) {
  return detail::unary(detail::abs_op{}, x);
}
/// x * x
template <expression X>
auto square(const X& x) {
  return detail::unary(detail::square_op{}, x);
}
/// a^b, element-wise (either may be a scalar), for floating-point values.
template <class L, class R>
  requires binary_operands<L, R>
auto pow(const L& a, const R& b) {
  constexpr bool floating = detail::floating_operand_v<L> || detail::floating_operand_v<R>;
  static_assert(floating,
                "dp: pow(a, b) needs floating-point values (integer powers wrap, and negative exponents "
                "have no integer result); convert integers with dp::cast<float>(x)");
  if constexpr (floating) {
    return detail::binary(detail::pow_op{}, a, b);
  } else {
    return 0;  // a stand-in, so that the message above is the only error
  }
}
/// Element-wise maximum (NaN propagates). For the largest element of a tensor see dp::max.
template <class L, class R>
  requires binary_operands<L, R>
auto maximum(const L& a, const R& b) {
  return detail::binary(detail::maximum_op{}, a, b);
}
/// Element-wise minimum (NaN propagates). For the smallest element of a tensor see dp::min.
template <class L, class R>
  requires binary_operands<L, R>
auto minimum(const L& a, const R& b) {
  return detail::binary(detail::minimum_op{}, a, b);
}
/// x limited to [lo, hi].
template <expression X, scalar S1, scalar S2>
auto clamp(const X& x, S1 lo, S2 hi) {
  using T = detail::value_of<X>;
  const T l = detail::scalar_as<T>(lo), h = detail::scalar_as<T>(hi);
  if constexpr (std::is_floating_point_v<T>) {
    DP_CHECK(!std::isnan(l) && !std::isnan(h), value_error, "dp: clamp: bounds ", lo, " and ", hi,
             " include NaN, which bounds nothing; pass numbers (-inf or inf for no bound on a side)");
  }
  DP_CHECK(!(h < l), value_error, "dp: clamp: lower bound ", lo, " is above upper bound ", hi);
  return detail::unary(detail::clamp_op<T>{l, h}, x);
}
/// Values converted to U.
template <class U, expression X>
auto cast(const X& x) {
  static_assert(std::is_arithmetic_v<U>, "dp: cast<U>: U must be an arithmetic type");
  return detail::unary(detail::cast_op<U>{}, x);
}

/// a where c is true (non-zero), else b; a and b may be scalars.
template <expression C, class A, class B>
  requires(expression<A> || scalar<A>) && (expression<B> || scalar<B>) && (expression<A> || expression<B>)
auto where(const C& c, const A& a, const B& b) {
  auto nc = detail::node_of<C>(detail::to_node(c));
  if constexpr (scalar<A>) {
    auto nb = detail::node_of<B>(detail::to_node(b));
    return expr{detail::make_select_node(std::move(nc), detail::scalar_as_node<decltype(nb)>(a), std::move(nb))};
  } else if constexpr (scalar<B>) {
    auto na = detail::node_of<A>(detail::to_node(a));
    return expr{detail::make_select_node(std::move(nc), std::move(na), detail::scalar_as_node<decltype(na)>(b))};
  } else {
    return expr{detail::make_select_node(std::move(nc), detail::node_of<A>(detail::to_node(a)),
                                         detail::node_of<B>(detail::to_node(b)))};
  }
}

}  // namespace dp::inline DP_ABI
