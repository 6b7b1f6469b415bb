// Functions for forward code that work on tensors, expressions and traced values alike.
#pragma once

#include <dp/exec/assign.hpp>
#include <dp/exec/reduce.hpp>
#include <dp/expr/operators.hpp>
#include <dp/nn/autograd/ops.hpp>
#include <dp/nn/mode.hpp>
#include <dp/nn/parameter.hpp>

namespace dp::inline DP_ABI::nn {

/// softmax along `axis` (shifted by the maximum, which is treated as a constant: softmax does not
/// change under a shift, so the gradient is exact).
template <class X>
auto softmax(const X& x, index_t axis = -1) {
  auto in = detail::materialize(x);
  const int a = dp::normalize_axis(axis, in.rank(), "softmax");  // an error names softmax, not the max inside
  auto m = nn::detach(dp::max(in, a, true));
  auto e = detail::materialize(dp::exp(in - m));
  return e / dp::sum(e, a, true);
}

/// log(softmax(x)) along `axis`, computed stably.
template <class X>
auto log_softmax(const X& x, index_t axis = -1) {
  auto in = detail::materialize(x);
  const int a = dp::normalize_axis(axis, in.rank(), "log_softmax");
  auto m = nn::detach(dp::max(in, a, true));
  auto shifted = detail::materialize(in - m);
  return shifted - dp::log(dp::sum(dp::exp(shifted), a, true));
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

}  // namespace detail

/// The one way forward code changes a buffer: `nn::update(running_mean, 0.9f * running_mean + 0.1f * m)`.
/// While a trainer traces a step the write is recorded and replayed on every later step (reading
/// the values that step computes); outside a trace it happens at once. After each training step
/// dp::parallel synchronises buffers by their policy; in evaluation mode it does not, so there an
/// update is an error (the replicas would drift apart). Writing a buffer any other way from forward
/// is an error (the write guard). The value may be any expression of tensors, buffers and traced
/// values (gradients never flow into it) that broadcasts to the buffer's shape.
template <class T, class E>
void update(const buffer<T>& b, const E& value) {
  DP_CHECK(b.value().defined(), value_error, "dp: nn::update of a buffer without a value");
  DP_CHECK(!detail::replica_eval_flag(), value_error, "dp: nn::update of a buffer of shape ", b.shape(),
           " in evaluation mode, in a model that dp::parallel trains: dp::parallel synchronises buffers after "
           "training-mode calls only, so each replica (and rank) would update its own copy from its share of the "
           "batch and the copies would drift apart; update buffers in training mode only (`if (nn::training()) "
           "nn::update(...)`, as batch_norm does), or call par.train() first");
  DP_CHECK(dp::detail::updatable_in_forward(b.value().storage().get()), value_error,
           "dp: nn::update of a buffer of shape ", b.shape(),
           " that is not part of the model being trained (a static member, a global, or another model's buffer): "
           "its updates would escape the buffers' synchronisation across replicas and the undo of a failed step, "
           "and every replica would write the one copy; make the buffer a member of the model");
  const auto node = dp::detail::stored_as<T>(dp::detail::to_node(value));  // checked as an assignment is
  using Node = std::remove_cvref_t<decltype(node)>;
  const dp::shape s = dp::detail::meta_of(node).shape;
  DP_CHECK(broadcastable_to(s, b.shape()), shape_error, "dp: nn::update: a value of shape ", s,
           " cannot be written into a buffer of shape ", b.shape());
  if (detail::graph* g = detail::tracing_graph()) {
    auto o = std::make_unique<detail::side_effect_op<T, Node>>(b.value(), node);
    o->forward(*g);
    g->record(std::move(o));
  } else {
    tensor<T> target = b.value();
    if (dp::detail::current_write_lock().since == 0) {  // outside forward: as any write
      dp::detail::check_owner(target.storage().get());
    }
    dp::detail::assign_node(target, node, dp::detail::eager_ctx{});
  }
}

}  // namespace dp::inline DP_ABI::nn
