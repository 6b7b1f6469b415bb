// Backward of an element-wise expression, derived at compile time from the forward expression's
// type: the gradient reaching leaf K is an expression built by the chain rule along the path from the
// root to that leaf, using each functor's own derivative. It is evaluated like any expression: one
// fused pass per leaf that needs a gradient (with a reduction where the leaf was broadcast).
#pragma once

#include <cstddef>
#include <type_traits>

#include <dp/expr/functional.hpp>
#include <dp/expr/node.hpp>

namespace dp::inline DP_ABI::nn::detail {

/// A gradient that is structurally zero (the path crosses a comparison or a where condition).
struct zero_grad {};

template <class F>
struct unary_grad_fn {
  static constexpr const char* name = "backward";
  F f;
  template <class T>
  DP_HOST_DEVICE DP_FORCEINLINE T operator()(T x, T g) const {
    return f.grad(x, g);
  }
};
template <class F>
struct grad_a_fn {
  static constexpr const char* name = "backward";
  F f;
  template <class T>
  DP_HOST_DEVICE DP_FORCEINLINE T operator()(T a, T b, T g) const {
    return f.grad_a(a, b, g);
  }
};
template <class F>
struct grad_b_fn {
  static constexpr const char* name = "backward";
  F f;
  template <class T>
  DP_HOST_DEVICE DP_FORCEINLINE T operator()(T a, T b, T g) const {
    return f.grad_b(a, b, g);
  }
};

template <class F>
struct is_cast : std::false_type {};
template <class U>
struct is_cast<dp::detail::cast_op<U>> : std::true_type {};

namespace dd = dp::detail;

// Every overload is declared before any is defined (leaves come from several namespaces).
template <std::size_t K, class T, class G>
auto leaf_grad(const dd::scalar_node<T>&, const G&);
template <std::size_t K, class F, class A, class G>
auto leaf_grad(const dd::unary_node<F, A>& n, const G& g);
template <std::size_t K, class F, class A, class B, class G>
auto leaf_grad(const dd::binary_node<F, A, B>& n, const G& g);
template <std::size_t K, class C, class A, class B, class G>
auto leaf_grad(const dd::select_node<C, A, B>& n, const G& g);
template <std::size_t K, class F, class A, class B, class C, class G>
auto leaf_grad(const dd::ternary_node<F, A, B, C>&, const G&);
template <std::size_t K, dd::leaf_node N, class G>
auto leaf_grad(const N&, const G& g);

template <std::size_t K, class T, class G>
auto leaf_grad(const dd::scalar_node<T>&, const G&) {
  return zero_grad{};
}

template <std::size_t K, class F, class A, class G>
auto leaf_grad(const dd::unary_node<F, A>& n, const G& g) {
  if constexpr (std::is_same_v<G, zero_grad> || !dd::differentiable_v<F>) {
    return zero_grad{};
  } else if constexpr (is_cast<F>::value) {
    // A cast to an integer or bool is a step: no gradient (PyTorch's x.bool() and x.long() have none).
    using In = typename A::value_type;
    using Out = typename dd::unary_node<F, A>::value_type;
    if constexpr (std::is_floating_point_v<In> && std::is_floating_point_v<Out>) {
      return leaf_grad<K>(n.a, dd::make_unary_node(dd::cast_op<In>{}, g));
    } else {
      return zero_grad{};
    }
  } else {
    return leaf_grad<K>(n.a, dd::make_binary_node(unary_grad_fn<F>{n.f}, n.a, g));
  }
}

// The gradient reaching operand a (or b) of a binary node. Sums, differences and products get
// expressions that carry only what they need (g, or g and the other operand): the types of derived
// gradients then grow with the depth of the expression, not with its size.
template <class F, class A, class B, class G>
auto grad_into_a(const dd::binary_node<F, A, B>& n, const G& g) {
  if constexpr (std::is_same_v<F, dd::add_op> || std::is_same_v<F, dd::sub_op>) {
    return g;
  } else if constexpr (std::is_same_v<F, dd::mul_op>) {
    return dd::make_binary_node(dd::mul_op{}, g, n.b);
  } else if constexpr (std::is_same_v<F, dd::div_op>) {
    return dd::make_binary_node(dd::div_op{}, g, n.b);
  } else {
    return dd::make_ternary_node(grad_a_fn<F>{n.f}, n.a, n.b, g);
  }
}
template <class F, class A, class B, class G>
auto grad_into_b(const dd::binary_node<F, A, B>& n, const G& g) {
  if constexpr (std::is_same_v<F, dd::add_op>) {
    return g;
  } else if constexpr (std::is_same_v<F, dd::sub_op>) {
    return dd::make_unary_node(dd::neg_op{}, g);
  } else if constexpr (std::is_same_v<F, dd::mul_op>) {
    return dd::make_binary_node(dd::mul_op{}, g, n.a);
  } else {
    return dd::make_ternary_node(grad_b_fn<F>{n.f}, n.a, n.b, g);
  }
}

template <std::size_t K, class F, class A, class B, class G>
auto leaf_grad(const dd::binary_node<F, A, B>& n, const G& g) {
  if constexpr (std::is_same_v<G, zero_grad> || !dd::differentiable_v<F>) {
    return zero_grad{};
  } else if constexpr (K < static_cast<std::size_t>(dd::leaf_count_v<A>)) {
    return leaf_grad<K>(n.a, grad_into_a(n, g));
  } else {
    return leaf_grad<K - dd::leaf_count_v<A>>(n.b, grad_into_b(n, g));
  }
}

template <std::size_t K, class C, class A, class B, class G>
auto leaf_grad(const dd::select_node<C, A, B>& n, const G& g) {
  constexpr std::size_t nc = dd::leaf_count_v<C>, na = dd::leaf_count_v<A>;
  using T = typename dd::select_node<C, A, B>::value_type;
  if constexpr (std::is_same_v<G, zero_grad> || K < nc) {
    return zero_grad{};
  } else if constexpr (K < nc + na) {
    return leaf_grad<K - nc>(n.a, dd::make_select_node(n.c, g, dd::scalar_node<T>{T(0)}));
  } else {
    return leaf_grad<K - nc - na>(n.b, dd::make_select_node(n.c, dd::scalar_node<T>{T(0)}, g));
  }
}

template <std::size_t K, class F, class A, class B, class C, class G>
auto leaf_grad(const dd::ternary_node<F, A, B, C>&, const G&) {
  static_assert(dd::leaf_count_v<A> < 0, "dp: internal: ternary nodes only appear in derived backward passes");
  return zero_grad{};
}

template <std::size_t K, dd::leaf_node N, class G>
auto leaf_grad(const N&, const G& g) {
  static_assert(K == 0, "dp: internal: leaf index out of range");
  return g;
}

/// Whether leaf K of a node receives the very gradient expression that leaf K - 1 receives: the two
/// are the operands of one sum (x w + b inside relu(x w + b)), reached along one path from the root.
template <std::size_t K, class N>
struct shares_previous_grad : std::false_type {};
template <std::size_t K, class F, class A>
struct shares_previous_grad<K, dd::unary_node<F, A>> : shares_previous_grad<K, A> {};
template <std::size_t K, class F, class A, class B>
struct shares_previous_grad<K, dd::binary_node<F, A, B>> {
  static constexpr bool value = [] {
    constexpr auto na = static_cast<std::size_t>(dd::leaf_count_v<A>);
    if constexpr (K < na) {
      return shares_previous_grad<K, A>::value;
    } else if constexpr (K > na) {
      return shares_previous_grad<K - na, B>::value;
    } else {
      return K > 0 && std::is_same_v<F, dd::add_op> && dd::leaf_node<A> && dd::leaf_node<B>;
    }
  }();
};

}  // namespace dp::inline DP_ABI::nn::detail
