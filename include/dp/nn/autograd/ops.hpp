// The generic recorded operations: fused element-wise expressions, reductions, matrix products,
// views and side effects on buffers, plus the functions that record them when traced values flow
// through dp's ordinary API (expressions, dp::sum/mean/max/min, dp::matmul, var views).
#pragma once

#include <array>
#include <cstddef>
#include <memory>
#include <type_traits>
#include <utility>

#include <dp/core/shape.hpp>
#include <dp/exec/assign.hpp>
#include <dp/exec/matmul.hpp>
#include <dp/exec/reduce.hpp>
#include <dp/nn/autograd/derive.hpp>
#include <dp/nn/autograd/graph.hpp>

namespace dp::inline DP_ABI::nn::detail {

namespace dd = dp::detail;

template <class X>
struct is_var : std::false_type {};
template <class V>
struct is_var<var<V>> : std::true_type {};

/// A traced expression: a var, or an expression with at least one var leaf.
template <class X>
concept traced = is_var<std::remove_cvref_t<X>>::value || (dp::expression<X> && dd::traced_v<dd::node_of<X>>);

/// The graph a traced node records into (that of its first var leaf).
template <class Node>
graph* graph_of(const Node& n) {
  graph* g = nullptr;
  auto fn = [&](const auto& leaf) {
    using L = std::remove_cvref_t<decltype(leaf)>;
    if constexpr (dd::traced_leaf_v<L>) {
      if (!g) {
        g = leaf.g;
      }
    }
  };
  dd::for_each_leaf(n, fn);
  return g;
}

/// Whether any leaf of the node carries a gradient (a var that requires one, or a trainer's parameter).
template <class Node>
bool any_requires_grad(const Node& n) {
  bool r = false;
  auto fn = [&](const auto& leaf) {
    using L = std::remove_cvref_t<decltype(leaf)>;
    if constexpr (dd::traced_leaf_v<L>) {
      r = r || (!leaf.no_grad && leaf.g->template requires_grad<typename L::value_type>(leaf.slot));
    } else if constexpr (requires {
                           leaf.grad.defined();
                           leaf.id;
                         }) {
      r = r || leaf.grad.defined();
    }
  };
  dd::for_each_leaf(n, fn);
  return r;
}

/// A leaf of the other floating type reached a node of type V through dp::cast: no gradient target
/// of type V reaches it, so its gradient (and everything before it) would silently be 0.
template <class W, class V>
[[noreturn]] void refuse_cast_gradient() {
  constexpr auto name = [](bool is_float) { return is_float ? "float" : "double"; };
  throw value_error(dd::concat("dp: a traced forward casts a value that needs a gradient from ",
                               name(std::is_same_v<W, float>), " to ", name(std::is_same_v<V, float>),
                               " (dp::cast): gradients do not flow through a cast between floating types; compute "
                               "the model and its loss in one type (cast the data instead)"));
}

/// Whether leaf K of a node gets no gradient by the node's structure (it is only compared, say).
template <class V, std::size_t K, class Node>
inline constexpr bool gradient_is_zero =
    std::is_same_v<decltype(leaf_grad<K>(std::declval<const Node&>(), std::declval<const dd::tensor_node<V>&>())),
                   zero_grad>;

/// The gradient target of leaf K of a node (inactive unless it is a var or parameter of type V;
/// one of the other type that needs a gradient is refused).
template <class V, std::size_t K, class Node>
grad_target<V> leaf_target(graph& g, const Node& node) {
  const auto& leaf = dd::leaf_at<K>(node);
  using L = std::remove_cvref_t<decltype(leaf)>;
  if constexpr (std::is_same_v<L, slot_node<V>>) {
    if (!leaf.no_grad && !leaf.grad) {
      return g.slot_target<V>(leaf.slot);
    }
  } else if constexpr (std::is_same_v<L, dd::param_node<V>>) {
    return g.param_target<V>(leaf.grad);
  } else if constexpr (!gradient_is_zero<V, K, Node>) {  // under a comparison its gradient is 0 anyway
    if constexpr (dd::traced_leaf_v<L>) {
      if (!leaf.no_grad && g.template requires_grad<typename L::value_type>(leaf.slot)) {
        refuse_cast_gradient<typename L::value_type, V>();
      }
    } else if constexpr (requires {
                           leaf.grad.defined();
                           leaf.id;
                         }) {
      if (leaf.grad.defined()) {
        refuse_cast_gradient<typename L::value_type, V>();
      }
    }
  }
  return {};
}

/// Plans (in leaf order) and applies the gradients of every leaf of `node` given the gradient
/// expression `root` that reaches the node's output.
template <class V, class Node>
struct expr_backward {
  static constexpr std::size_t L = static_cast<std::size_t>(dd::leaf_count_v<Node>);
  std::array<grad_target<V>, L> targets{};

  void plan(graph& g, const Node& node) {
    [&]<std::size_t... K>(std::index_sequence<K...>) {
      ((targets[K] = leaf_target<V, K>(g, node)), ...);
    }(std::make_index_sequence<L>{});
  }
  template <class Root>
  void apply(graph& g, const Node& node, const Root& root) {
    [&]<std::size_t... K>(std::index_sequence<K...>) {
      (apply_one<K>(g, node, root), ...);
    }(std::make_index_sequence<L>{});
  }
  template <std::size_t K, class Root>
  void apply_one(graph& g, const Node& node, const Root& root) {
    if (!targets[K].active) {
      return;
    }
    auto ge = leaf_grad<K>(node, root);
    if constexpr (std::is_same_v<decltype(ge), zero_grad>) {
      apply_zero_grad(g, targets[K]);
    } else {
      if constexpr (shares_previous_grad<K, Node>::value) {
        // relu(x w + b): the bias's gradient is the product's, summed over the rows. When the
        // product's target was just written with exactly that expression, it is summed from there.
        const grad_target<V>& prev = targets[K - 1];
        const dp::shape& s = dd::meta_of(ge).shape;
        if (prev.active && !accumulates(g, prev) && prev.t.shape() == s && !broadcastable_to(s, targets[K].t.shape())) {
          apply_summed_grad(g, targets[K], prev.t);
          return;
        }
      }
      apply_grad(g, targets[K], ge);
    }
  }
};

template <class V>
slot_node<V> grad_node(graph& g, int slot) {
  const auto& t = g.value<V>(slot);
  return {&g, slot, true, true, t.shape(), t.device()};
}

// ------------------------------------------------------------------------------------------ fused
template <class V, class Node>
struct fused_op final : op {
  Node node;
  int out;
  expr_backward<V, Node> bw;

  fused_op(Node n, int o) : node(std::move(n)), out(o) {}
  const char* name() const override { return "fused element-wise"; }
  void forward(graph& g) override { dd::assign_node(g.value<V>(out), node, dd::eager_ctx{}); }
  bool active = false;
  void plan(graph& g) override {
    active = g.receives_grad<V>(out);
    if (active) {
      bw.plan(g, node);
    }
  }
  void backward(graph& g) override {
    if (active) {
      bw.apply(g, node, grad_node<V>(g, out));
    }
  }
};

/// Refuses a tensor leaf of `node` that is a parameter's values (see graph::parameters).
template <class Node>
void refuse_parameter_values(const graph& g, const Node& node) {
  auto constant = [&](const auto& leaf) {
    if constexpr (requires { g.require_not_parameter(leaf.t); }) {
      g.require_not_parameter(leaf.t);
    }
  };
  dd::for_each_leaf(node, constant);
}

/// Records `node` as one fused operation and returns its value as a var.
template <class Node>
auto record_fused(const Node& node) {
  using V = typename Node::value_type;
  if constexpr (std::is_same_v<V, bool>) {
    return record_fused(dd::make_unary_node(dd::cast_op<float>{}, node));
  } else {
    static_assert(slot_type_v<V>, "dp: traced values are float, double or int64");
    graph& g = *graph_of(node);
    refuse_parameter_values(g, node);
    const dd::node_meta m = dd::meta_of(node);
    const int out = g.add_slot<V>(empty<V>(m.shape, m.has_device ? m.dev : dp::cpu()), any_requires_grad(node));
    auto o = std::make_unique<fused_op<V, Node>>(node, out);
    o->forward(g);
    g.record(std::move(o));
    return g.make_var<V>(out);
  }
}

// ------------------------------------------------------------------------------------------ side effect
/// Writes an expression into a buffer during forward (running statistics); no gradient.
template <class V, class Node>
struct side_effect_op final : op {
  tensor<V> target;
  Node node;
  side_effect_op(tensor<V> t, Node n) : target(std::move(t)), node(std::move(n)) {}
  const char* name() const override { return "buffer update"; }
  void forward(graph&) override { dd::assign_node(target, node, dd::eager_ctx{}); }
  void plan(graph&) override {}
  void backward(graph&) override {}
};

// ------------------------------------------------------------------------------------------ reduce
template <class Op, class V, class Node>
struct reduce_op final : op {
  Node node;
  int out;  // keepdim shape
  bool mean;
  expr_backward<V, Node> bw;

  tensor<V> ties;  // max / min: how many elements equal each result (made at freeze, not per step)

  reduce_op(Node n, int o, bool m) : node(std::move(n)), out(o), mean(m) {}
  const char* name() const override { return Op::name; }
  void forward(graph& g) override { dd::reduce_into<Op>(g.value<V>(out), node, dd::eager_ctx{}, mean); }
  bool active = false;
  void plan(graph& g) override {
    active = g.receives_grad<V>(out);
    if (active) {
      bw.plan(g, node);
      if constexpr (!std::is_same_v<Op, dd::sum_reduce>) {
        const tensor<V>& v = g.value<V>(out);
        ties = empty<V>(v.shape(), v.device());
      }
    }
  }
  void backward(graph& g) override {
    if (!active) {
      return;
    }
    // The gradient of a reduction is its output gradient spread over the reduced input: a
    // broadcast view (no copy) of the input's shape, so leaves broadcast inside the reduced
    // expression are summed over every position they covered.
    const dp::shape in_shape = dd::meta_of(node).shape;
    dd::tensor_node<V> gn{g.grad<V>(out).broadcast_to(in_shape)};
    if constexpr (std::is_same_v<Op, dd::sum_reduce>) {
      if (mean) {
        const V scale = V(g.value<V>(out).numel()) / V(dd::meta_of(node).shape.numel());
        bw.apply(g, node, dd::make_binary_node(dd::mul_op{}, gn, dd::scalar_node<V>{scale}));
      } else {
        bw.apply(g, node, gn);
      }
    } else {  // max / min: the gradient is shared evenly by the elements equal to the result (ties)
      const dd::tensor_node<V> val{g.value<V>(out).broadcast_to(in_shape)};
      const auto equal = dd::make_binary_node(dd::equal_op{}, node, val);
      const auto hit = dd::make_select_node(equal, dd::scalar_node<V>{V(1)}, dd::scalar_node<V>{V(0)});
      dd::reduce_into<dd::sum_reduce>(ties, hit, dd::eager_ctx{}, false);
      const dd::tensor_node<V> share{ties.broadcast_to(in_shape)};
      const auto share_of_g = dd::make_binary_node(dd::div_op{}, gn, share);
      // Where the result is NaN, g / ties x hit, PyTorch's scale_grad_by_count: a NaN equals no
      // element, and its slice's gradient is NaN (g / 0 x 0), not 0. Elsewhere g / ties where the
      // element equals the result: an input recomputed a bit off the stored result (fused
      // differently on a GPU) then gets 0, not NaN.
      const auto nan_result = dd::make_binary_node(dd::not_equal_op{}, val, val);
      bw.apply(g, node,
               dd::make_select_node(nan_result, dd::make_binary_node(dd::mul_op{}, share_of_g, hit),
                                    dd::make_select_node(equal, share_of_g, dd::scalar_node<V>{V(0)})));
    }
  }
};

// ------------------------------------------------------------------------------------------ views
enum class view_kind : std::uint8_t { reshape, transpose };

template <class V>
struct view_op final : op {
  int in, out;
  view_kind kind;
  dp::shape target;  // reshape: the new shape
  int d0 = 0, d1 = 0;
  grad_target<V> t;

  const char* name() const override { return "view"; }
  tensor<V> make(const tensor<V>& x) const {
    return kind == view_kind::reshape ? x.reshape(target) : x.transpose(d0, d1);
  }
  void forward(graph& g) override { g.value<V>(out) = make(g.value<V>(in)); }
  void plan(graph& g) override {
    if (g.receives_grad<V>(out)) {
      t = g.slot_target<V>(in);
    }
  }
  void backward(graph& g) override {
    if (!t.active) {
      return;
    }
    const tensor<V>& go = g.grad<V>(out);
    const tensor<V> back = kind == view_kind::reshape ? go.reshape(g.value<V>(in).shape()) : go.transpose(d0, d1);
    apply_grad(g, t, dd::tensor_node<V>{back});
  }
};

template <class V>
var<V> record_view(const var<V>& x, view_kind kind, dp::shape target, int d0, int d1) {
  graph& g = *x.graph();
  auto o = std::make_unique<view_op<V>>();
  o->in = x.slot();
  o->kind = kind;
  o->target = target;
  o->d0 = d0;
  o->d1 = d1;
  tensor<V> v = o->make(g.value<V>(x.slot()));
  DP_CHECK(kind != view_kind::reshape || v.shares_storage(g.value<V>(x.slot())), runtime_error,
           "dp: internal: a traced reshape of a non-contiguous value");
  o->out = g.add_slot<V>(std::move(v), grad_flows(x));
  const int out = o->out;
  g.record(std::move(o));
  return g.make_var<V>(out);
}

// ------------------------------------------------------------------------------------------ matmul
/// An operand of a traced matrix product: a slot, or a parameter/constant tensor.
template <class V>
struct mm_operand {
  int slot = -1;
  bool no_grad = false;
  tensor<V> value;  // parameters and constants
  tensor<V> grad;   // parameters (undefined for constants)
  bool trans = false;

  tensor<V> get(graph& g) const {
    const tensor<V>& v = slot >= 0 ? g.value<V>(slot) : value;
    return trans ? v.t() : v;
  }
};

template <class V>
struct matmul_op final : op {
  mm_operand<V> a, b;
  int out;
  grad_target<V> ta, tb;

  const char* name() const override { return "matmul"; }
  void forward(graph& g) override { dd::matmul_into(g.value<V>(out), a.get(g), b.get(g)); }
  grad_target<V> target_of(graph& g, const mm_operand<V>& x) {
    if (x.slot >= 0) {
      return x.no_grad ? grad_target<V>{} : g.slot_target<V>(x.slot);
    }
    return g.param_target<V>(x.grad);
  }
  void plan(graph& g) override {
    if (g.receives_grad<V>(out)) {
      ta = target_of(g, a);
      tb = target_of(g, b);
    }
  }
  static V beta(graph& g, const grad_target<V>& t) { return accumulates(g, t) ? V(1) : V(0); }
  void backward(graph& g) override {
    const tensor<V>& go = g.grad<V>(out);
    if (ta.active) {  // d op(A) = G op(B)^T; stored A^T when transposed
      const tensor<V> opb = b.get(g);
      if (a.trans) {
        dd::matmul_into(ta.t, opb, go.t(), V(1), beta(g, ta));
      } else {
        dd::matmul_into(ta.t, go, opb.t(), V(1), beta(g, ta));
      }
    }
    if (tb.active) {  // d op(B) = op(A)^T G
      const tensor<V> opa = a.get(g);
      if (b.trans) {
        dd::matmul_into(tb.t, go.t(), opa, V(1), beta(g, tb));
      } else {
        dd::matmul_into(tb.t, opa.t(), go, V(1), beta(g, tb));
      }
    }
  }
};

template <class V>
mm_operand<V> as_operand(const var<V>& v) {
  mm_operand<V> o;
  o.slot = v.slot();
  o.no_grad = v.no_grad();
  return o;
}
template <class V>
mm_operand<V> as_operand(const parameter<V>& p) {
  mm_operand<V> o;
  o.value = p.value();
  o.grad = p.grad();
  return o;
}
template <class V>
mm_operand<V> as_operand(const tensor<V>& t) {
  mm_operand<V> o;
  o.value = t;
  return o;
}

template <class V>
var<V> record_matmul(graph& g, mm_operand<V> a, mm_operand<V> b) {
  for (const auto* o : {&a, &b}) {
    if (o->slot < 0 && !o->grad.defined()) {  // a constant, not a parameter's operand
      g.require_not_parameter(o->value);
    }
  }
  const tensor<V> va = a.get(g), vb = b.get(g);
  DP_CHECK(va.rank() == 2 && vb.rank() == 2, shape_error, "dp: traced matmul takes 2-D operands, got ", va.shape(),
           " and ", vb.shape(), "; flatten leading dimensions first");
  DP_CHECK(va.shape()[1] == vb.shape()[0], shape_error, "dp: matmul: shapes ", va.shape(), " and ", vb.shape(),
           " do not fit: the inner dimensions differ (", va.shape()[1], " vs ", vb.shape()[0], ")");
  const bool rg = (a.slot >= 0 ? (!a.no_grad && g.requires_grad<V>(a.slot)) : a.grad.defined()) ||
                  (b.slot >= 0 ? (!b.no_grad && g.requires_grad<V>(b.slot)) : b.grad.defined());
  auto o = std::make_unique<matmul_op<V>>();
  o->a = std::move(a);
  o->b = std::move(b);
  o->out = g.add_slot<V>(empty<V>({va.shape()[0], vb.shape()[1]}, va.device()), rg);
  o->forward(g);
  const int out = o->out;
  g.record(std::move(o));
  return g.make_var<V>(out);
}

// ------------------------------------------------------------------------------------------ materialize
/// A tensor or var holding the value of `x` (an expression is evaluated, or recorded when traced).
template <class X>
auto materialize(const X& x) {
  using Xr = std::remove_cvref_t<X>;
  if constexpr (tensor_type<Xr>) {
    return tensor<typename Xr::value_type>(x);
  } else if constexpr (is_var<Xr>::value) {
    return x;
  } else if constexpr (parameter_type<Xr> || buffer_type<Xr>) {
    return x.value();
  } else {
    static_assert(dp::expression<X>, "dp: expected a tensor, an expression or a traced value");
    const auto& node = dd::to_node(x);
    using Node = std::remove_cvref_t<decltype(node)>;
    if constexpr (dd::traced_v<Node>) {
      return record_fused(node);
    } else {
      return tensor<typename Node::value_type>(x);
    }
  }
}

/// Materializes a forward's result: an expression, or a tuple/pair of them element by element;
/// anything else is returned as it is.
template <class X>
auto materialize_output(const X& x) {
  if constexpr (dp::expression<X> || is_var<X>::value || tensor_type<X>) {
    return materialize(x);
  } else if constexpr (requires { std::tuple_size<X>::value; }) {
    return std::apply([](const auto&... e) { return std::tuple{materialize_output(e)...}; }, x);
  } else {
    return x;
  }
}

}  // namespace dp::inline DP_ABI::nn::detail

// ------------------------------------------------------------------------------------------ var views
namespace dp::inline DP_ABI::nn {

template <class V>
var<V> var<V>::reshape(dp::shape target) const {
  // The same checks as tensor::reshape: extents below -1 are refused, and the known extents'
  // product is checked for overflow before it is used (a wrapped product could match numel()).
  int unknown = -1;
  dp::shape given = target;  // the -1 read as 1
  for (int i = 0; i < target.rank(); ++i) {
    if (target[i] == -1) {
      DP_CHECK(unknown < 0, shape_error, "dp: reshape: only one extent of ", target, " may be -1");
      unknown = i;
      given[i] = 1;
    } else {
      DP_CHECK(target[i] >= 0, shape_error, "dp: reshape: extent ", target[i], " in ", target, " is negative");
    }
  }
  dp::detail::check_extents(given, "reshape");
  const index_t known = given.numel();
  if (unknown >= 0) {
    DP_CHECK(known != 0 && numel() % known == 0, shape_error, "dp: reshape: cannot reshape ", shape_, " (", numel(),
             " elements) to ", target);
    target[unknown] = numel() / known;
  }
  DP_CHECK(target.numel() == numel(), shape_error, "dp: reshape: cannot reshape ", shape_, " (", numel(),
           " elements) to ", target, " (", target.numel(), " elements)");
  if (!g_->template value<V>(slot_).is_contiguous()) {  // a transposed value: copy it first, as torch.reshape does
    return contiguous().reshape(target);
  }
  return detail::record_view(*this, detail::view_kind::reshape, target, 0, 0);
}

template <class V>
var<V> var<V>::contiguous() const {
  if (g_->template value<V>(slot_).is_contiguous()) {
    return *this;
  }
  return detail::record_fused(dp::detail::to_node(*this));
}

template <class V>
var<V> var<V>::flatten(index_t start, index_t end) const {
  return reshape(flattened_shape(shape_, start, end));
}

template <class V>
var<V> var<V>::transpose(index_t d0, index_t d1) const {
  const int a = normalize_axis(d0, rank(), "transpose"), b = normalize_axis(d1, rank(), "transpose");
  return detail::record_view(*this, detail::view_kind::transpose, {}, a, b);
}

template <class V>
var<V> var<V>::unsqueeze(index_t dim) const {
  const index_t d = dim < 0 ? dim + rank() + 1 : dim;  // 64 bits: a position past int's is out of range too
  DP_CHECK(d >= 0 && d <= rank(), value_error, "dp: unsqueeze: position ", dim, " is out of range for rank ", rank(),
           " (expected -", rank() + 1, "..", rank(), ")");
  dp::shape t = shape_;
  t.insert(static_cast<int>(d), 1);
  return reshape(t);
}

template <class V>
var<V> var<V>::squeeze(index_t dim) const {
  if (rank() == 0) {  // as tensor::squeeze: axis 0 or -1 of a 0-d value leaves it as it is
    (void)normalize_axis(dim, 0, "squeeze");
    return *this;
  }
  const int d = existing_axis(dim, rank(), "squeeze");
  DP_CHECK(shape_[d] == 1, shape_error, "dp: squeeze: dimension ", d, " of shape ", shape_, " has size ", shape_[d],
           ", expected 1");
  dp::shape t = shape_;
  t.erase(d);
  return reshape(t);
}

/// A value that flows on without a gradient (like torch's detach()).
template <class V>
var<V> detach(const var<V>& v) {
  return var<V>(v.graph(), v.slot(), v.shape(), v.device(), true);
}
template <class V>
tensor<V> detach(const tensor<V>& t) {
  return t;
}
/// An expression (a layer's output, as conv2d's): evaluated, or recorded when traced, then detached.
template <dp::expression E>
auto detach(const E& e) {
  return detach(detail::materialize(e));
}

}  // namespace dp::inline DP_ABI::nn

// ------------------------------------------------------------------------------------------ dp API hooks
namespace dp::inline DP_ABI::nn::detail {

/// dp::sum/mean/max/min of a traced expression record a reduction (found by argument-dependent lookup
/// from exec/reduce.hpp: every traced expression has a slot_node of this namespace among its types).
template <class Op, class OutT, class Node>
auto traced_reduce(const Node& node, std::span<const int> axes, bool all, bool keepdim, bool mean, const char* op) {
  using V = typename Node::value_type;
  static_assert(std::is_floating_point_v<V>, "dp: traced reductions need floating-point values");
  graph& g = *graph_of(node);
  const dd::node_meta m = dd::meta_of(node);
  const dp::shape kd = dd::reduced_shape(m.shape, axes, all, op);
  dd::check_reduced_axes<Op>(m.shape, kd, op);  // as eager: an empty result where no reduced axis is
  const bool rg = any_requires_grad(node);
  refuse_parameter_values(g, node);
  const int out = g.add_slot<V>(empty<V>(kd, m.has_device ? m.dev : dp::cpu()), rg);
  auto o = std::make_unique<reduce_op<Op, V, Node>>(node, out, mean);
  o->forward(g);
  g.record(std::move(o));
  var<V> v = g.make_var<V>(out);
  return keepdim ? v : v.reshape(dd::drop_reduced(m.shape, axes, all));
}

}  // namespace dp::inline DP_ABI::nn::detail

namespace dp::inline DP_ABI {

/// matmul of traced operands (vars, traced expressions, parameters): 2-D, recorded with its backward.
template <class A, class B>
  requires(nn::detail::traced<A> || nn::detail::traced<B>)
auto matmul(const A& a, const B& b) {
  auto operand = [](const auto& x) {
    using X = std::remove_cvref_t<decltype(x)>;
    if constexpr (nn::parameter_type<X> || tensor_type<X>) {
      return nn::detail::as_operand(x);
    } else {
      return nn::detail::as_operand(nn::detail::materialize(x));
    }
  };
  auto oa = operand(a);
  auto ob = operand(b);
  nn::detail::graph* g = nullptr;
  auto find = [&](const auto& x) {
    using X = std::remove_cvref_t<decltype(x)>;
    if constexpr (nn::detail::is_var<X>::value) {
      g = x.graph();
    } else if constexpr (nn::detail::traced<X>) {
      g = nn::detail::graph_of(detail::to_node(x));
    }
  };
  find(b);
  find(a);
  return nn::detail::record_matmul(*g, std::move(oa), std::move(ob));
}

}  // namespace dp::inline DP_ABI
