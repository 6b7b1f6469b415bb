// Functions for forward code that work on tensors, expressions and traced values alike.
#pragma once

#include <dp/expr/operators.hpp>
#include <dp/expr/reduce.hpp>
#include <dp/nn/autograd/ops.hpp>
#include <dp/nn/parameter.hpp>

namespace dp::inline DP_ABI::nn {

/// softmax along `axis` (shifted by the maximum, which is treated as a constant: softmax does not
/// change under a shift, so the gradient is exact).
template <class X>
auto softmax(const X& x, int axis = -1) {
  auto in = detail::materialize(x);
  auto m = nn::detach(dp::max(in, axis, true));
  auto e = detail::materialize(dp::exp(in - m));
  return e / dp::sum(e, axis, true);
}

/// log(softmax(x)) along `axis`, computed stably.
template <class X>
auto log_softmax(const X& x, int axis = -1) {
  auto in = detail::materialize(x);
  auto m = nn::detach(dp::max(in, axis, true));
  auto shifted = detail::materialize(in - m);
  return shifted - dp::log(dp::sum(dp::exp(shifted), axis, true));
}

namespace detail {
/// A parameter seen through another shape (same storage for the value and the gradient), e.g. a
/// per-channel weight [C] as [1, C, 1, 1] for broadcasting.
template <class T>
auto param_view(const parameter<T>& p, const dp::shape& s) {
  return dp::expr{
      dp::detail::param_node<T>{p.value().reshape(s), p.grad().defined() ? p.grad().reshape(s) : tensor<T>{}, &p}};
}
template <class T>
tensor<T> buffer_view(const buffer<T>& b, const dp::shape& s) {
  return b.value().reshape(s);
}

/// The graph a value is traced in (nullptr for tensors).
template <class X>
graph* graph_of_value(const X& x) {
  if constexpr (is_var<X>::value) {
    return x.graph();
  } else {
    return nullptr;
  }
}

/// A constant with the kind of `like`: the tensor itself, or (when tracing) a slot holding it that
/// needs no gradient.
template <class X, class T>
auto constant_like(const X& like, const tensor<T>& t) {
  if constexpr (is_var<X>::value) {
    graph& g = *like.graph();
    return g.make_var<T>(g.add_slot<T>(t, false));
  } else {
    return t;
  }
}

/// Writes `e` into a buffer: at once when `g` is null, else as a recorded step of g's forward.
template <class T, class E>
void update_buffer(const buffer<T>& b, const E& e, graph* g) {
  const auto& node = dp::detail::to_node(e);
  using Node = std::remove_cvref_t<decltype(node)>;
  if (g) {
    auto o = std::make_unique<side_effect_op<T, Node>>(b.value(), node);
    o->forward(*g);
    g->record(std::move(o));
  } else {
    tensor<T>(b.value()).assign(e);
  }
}
}  // namespace detail

}  // namespace dp::inline DP_ABI::nn
