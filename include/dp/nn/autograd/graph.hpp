// The traced graph ("plan") of a training step.
//
// Design (docs/modules.md, "Autograd: trace once, replay"): the first step of a
// given input shape runs `forward` eagerly with nn::var values flowing through it; every operation
// both computes and records itself. The recording is then frozen: gradient buffers are allocated,
// and each backward write is decided once to be a plain write (first contribution) or an
// accumulation. Later steps with the same shapes replay the recorded operations on the same
// buffers: no graph is built, nothing is allocated. Element-wise chains are recorded as single fused
// operations whose backward is derived from the functors' derivatives (derive.hpp), so it fuses too.
//
// Values live in slots of the graph; leaves refer to slots by index through the graph, so an input
// slot can be rebound to the next batch without copying.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include <dp/core/element_types.hpp>
#include <dp/core/tensor.hpp>
#include <dp/exec/assign.hpp>
#include <dp/exec/factory.hpp>
#include <dp/exec/reduce.hpp>
#include <dp/expr/node.hpp>
#include <dp/expr/operators.hpp>
#include <dp/nn/parameter.hpp>

namespace dp::inline DP_ABI::nn {

namespace detail {
class graph;
}

/// A value flowing through `forward` while a training step is traced. It has a shape and a device
/// but no readable values, so forward cannot depend on data (only on shapes), which is what makes
/// replaying the trace correct.
template <class V>
class var {
 public:
  using value_type = V;

  var(detail::graph* g, int slot, dp::shape s, dp::device d, bool no_grad = false)
      : g_(g), slot_(slot), shape_(s), dev_(d), no_grad_(no_grad) {}

  const dp::shape& shape() const noexcept { return shape_; }
  int rank() const noexcept { return shape_.rank(); }
  index_t numel() const noexcept { return shape_.numel(); }
  index_t size(index_t dim) const { return shape_[existing_axis(dim, rank(), "size")]; }
  dp::device device() const noexcept { return dev_; }

  // Views, recorded (their backward routes the gradient back).
  var reshape(dp::shape target) const;
  var view(dp::shape target) const { return reshape(target); }
  var flatten(index_t start = 0, index_t end = -1) const;
  var transpose(index_t d0, index_t d1) const;
  /// The transpose of a 2-D value; a 0-D or 1-D one as it is (PyTorch's t()).
  var t() const {
    DP_CHECK(rank() <= 2, shape_error, "dp: t() takes a value of at most 2 dimensions, got shape ", shape_,
             "; use transpose(d0, d1)");
    return rank() < 2 ? *this : transpose(0, 1);
  }
  var unsqueeze(index_t dim) const;
  var squeeze(index_t dim) const;
  /// This var, or a recorded copy when its value is a transposed view: ops that read their input's
  /// memory in row-major order take it so, as tensor::contiguous() does for eager code.
  var contiguous() const;

  detail::graph* graph() const noexcept { return g_; }
  int slot() const noexcept { return slot_; }
  bool no_grad() const noexcept { return no_grad_; }

 private:
  detail::graph* g_;
  int slot_;
  dp::shape shape_;
  dp::device dev_;
  bool no_grad_;
};

namespace detail {

/// Which element types have slots.
template <class V>
inline constexpr bool slot_type_v = dp::detail::model_element<V>;

/// A leaf reading a slot's value (or, with `grad`, its gradient) through the graph.
template <class V>
struct slot_node {
  using value_type = V;
  graph* g;
  int slot;
  bool grad;
  bool no_grad;  // a detached value: constant for differentiation
  dp::shape shape;
  dp::device dev;
};

/// One recorded operation.
struct op {
  virtual ~op() = default;
  /// Computes the outputs from the inputs (into the outputs' slots).
  virtual void forward(graph& g) = 0;
  /// Adds this operation's contribution to its inputs' gradients.
  virtual void backward(graph& g) = 0;
  /// At freeze, in reverse order: claims the gradient targets this op writes (first claim writes).
  virtual void plan(graph& g) = 0;
  virtual const char* name() const = 0;
  /// Throws for what a device kernel could only flag (a class index out of range, say), once the
  /// host has waited for the step anyway: when its loss was read back and is not finite.
  virtual void check_flags(graph&) {}
};

/// A gradient destination and whether this contribution is the first (a write) or not (an add).
template <class V>
struct grad_target {
  tensor<V> t;
  bool first = false;
  bool is_param = false;
  bool active = false;
};

class graph {
 public:
  graph() = default;
  graph(const graph&) = delete;
  graph& operator=(const graph&) = delete;

  template <class V>
  std::vector<tensor<V>>& values() {
    return store<V>().values;
  }
  template <class V>
  std::vector<tensor<V>>& grads() {
    return store<V>().grads;
  }
  template <class V>
  std::vector<std::uint8_t>& requires_grad_flags() {
    return store<V>().req;
  }

  template <class V>
  tensor<V>& value(int slot) {
    return values<V>()[static_cast<std::size_t>(slot)];
  }
  template <class V>
  tensor<V>& grad(int slot) {
    return grads<V>()[static_cast<std::size_t>(slot)];
  }
  template <class V>
  bool requires_grad(int slot) {
    return requires_grad_flags<V>()[static_cast<std::size_t>(slot)] != 0;
  }

  /// A new slot holding `value`.
  template <class V>
  int add_slot(tensor<V> value, bool requires_grad) {
    DP_CHECK(!frozen_, runtime_error, "dp: internal: a slot was added to a frozen graph");
    values<V>().push_back(std::move(value));
    grads<V>().emplace_back();
    requires_grad_flags<V>().push_back(requires_grad && !std::is_integral_v<V>);
    return static_cast<int>(values<V>().size()) - 1;
  }

  template <class V>
  var<V> make_var(int slot) {
    const auto& t = value<V>(slot);
    return var<V>(this, slot, t.shape(), t.device());
  }

  /// Records an operation that has already computed its outputs.
  void record(std::unique_ptr<op> o) { ops_.push_back(std::move(o)); }

  /// Claims a gradient destination during freeze; true for the first claim (that op writes).
  bool claim(const void* id) {
    for (const void* c : claimed_) {
      if (c == id) {
        return false;
      }
    }
    claimed_.push_back(id);
    return true;
  }
  bool claimed(const void* id) const {
    for (const void* c : claimed_) {
      if (c == id) {
        return true;
      }
    }
    return false;
  }

  /// Whether an operation's output receives a gradient: during freeze, when its consumers (planned
  /// before it) claimed it. An output nobody differentiates (a detached value) runs no backward.
  template <class V>
  bool receives_grad(int slot) {
    return requires_grad<V>(slot) && claimed(&grads<V>()[static_cast<std::size_t>(slot)]);
  }

  /// Resolves a slot-gradient target at freeze (allocated already).
  template <class V>
  grad_target<V> slot_target(int slot) {
    grad_target<V> t;
    if (!requires_grad<V>(slot)) {
      return t;
    }
    t.t = grad<V>(slot);
    t.first = claim(&grads<V>()[static_cast<std::size_t>(slot)]);
    t.active = true;
    return t;
  }
  /// A parameter-gradient target (the parameter must belong to a trainer: its grad is defined).
  template <class V>
  grad_target<V> param_target(const tensor<V>& param_grad) {
    grad_target<V> t;
    if (!param_grad.defined() || param_grad.numel() == 0) {  // an empty one shares its neighbour's address
      return t;
    }
    t.t = param_grad;
    t.first = claim(param_grad.data());
    t.is_param = true;
    t.active = true;
    // Plans run in backward's order, so the last op recorded for a region is the last to write it.
    const auto [lo, hi] =
        dp::detail::touched_range(param_grad.storage_offset(), param_grad.shape(), param_grad.strides());
    param_writes_.push_back({param_grad.storage().get(), lo, hi + 1, planning_op_});
    return t;
  }

  /// Where backward writes parameter gradients: elements [begin, end) of `storage`, written for the
  /// last time by op `op` (backward runs ops from the last to the first).
  struct param_write {
    const void* storage;
    index_t begin, end;
    int op;
  };
  const std::vector<param_write>& param_writes() const noexcept { return param_writes_; }

  /// Allocates gradients, plans every backward write (the loss's gradient is seeded by the caller),
  /// and seals the graph.
  template <class V>
  void freeze(int loss_slot) {
    alloc_grads<float>();
    alloc_grads<double>();
    claimed_.clear();
    claimed_.push_back(&grads<V>()[static_cast<std::size_t>(loss_slot)]);
    param_writes_.clear();
    for (planning_op_ = static_cast<int>(ops_.size()) - 1; planning_op_ >= 0; --planning_op_) {
      ops_[static_cast<std::size_t>(planning_op_)]->plan(*this);
    }
    frozen_ = true;
  }

  void run_forward() {
    for (auto& o : ops_) {
      o->forward(*this);
    }
  }
  void run_backward() {
    run_backward([](int) {});
  }
  /// Backward, calling after_op(i) once op i has run (ops run from the last to the first), so
  /// that gradients final after op i can be sent while the rest of backward runs.
  template <class F>
  void run_backward(F&& after_op) {
    for (int i = static_cast<int>(ops_.size()) - 1; i >= 0; --i) {
      ops_[static_cast<std::size_t>(i)]->backward(*this);
      after_op(i);
    }
  }

  bool frozen() const noexcept { return frozen_; }
  std::size_t op_count() const noexcept { return ops_.size(); }
  /// Each op's check_flags, in forward order.
  void check_flags() {
    for (auto& o : ops_) {
      o->check_flags(*this);
    }
  }

  /// Per-step state read by operations: the step number (random streams), the global index of this
  /// replica's first sample (so random masks do not depend on how the batch was split), and whether
  /// parameter gradients add to pending ones (accumulation across backward calls).
  std::uint64_t step = 0;
  index_t sample_offset = 0;
  bool accumulate_params = false;
  /// Random operations recorded so far: each draws from its own stream, so one dropout module
  /// applied twice gets two masks (as in PyTorch and outside a trace), not one mask twice.
  std::uint64_t random_calls = 0;
  /// The trainer's flat parameter storage: forward reading it as a plain tensor (w.value()) would
  /// make a parameter a constant to backward, so recording refuses it.
  const void* parameters = nullptr;

  /// Refuses a constant operand (a tensor leaf) that is a parameter's values (see `parameters`).
  template <class V>
  void require_not_parameter(const tensor<V>& t) const {
    DP_CHECK(parameters == nullptr || !t.defined() || t.storage().get() != parameters, value_error,
             "dp: a traced forward reads a parameter's values as a plain tensor (w.value()): backward would take "
             "them as a constant and the parameter would get no gradient; use the parameter itself (w, not "
             "w.value()); for x times w transposed, declare w transposed or use nn::linear");
  }

  /// Whether the parameter gradient `data` was written by this graph's backward.
  bool writes_param_grad(const void* data) const { return claimed(data); }

 private:
  template <class V>
  void alloc_grads() {
    auto& vals = values<V>();
    auto& gr = grads<V>();
    auto& req = requires_grad_flags<V>();
    for (std::size_t i = 0; i < vals.size(); ++i) {
      if (req[i] && !gr[i].defined()) {
        gr[i] = empty<V>(vals[i].shape(), vals[i].device());
      }
    }
  }

  /// The slots of one element type: values, their gradients, and whether each needs one.
  template <class V>
  struct slots {
    std::vector<tensor<V>> values, grads;
    std::vector<std::uint8_t> req;
  };
  template <class V>
  slots<V>& store() {
    static_assert(slot_type_v<V>, "dp: traced values are float, double or int64");
    return std::get<slots<V>>(store_);
  }
  dp::detail::over_model_elements<std::tuple, slots> store_;  // one store per slot type
  std::vector<std::unique_ptr<op>> ops_;
  std::vector<const void*> claimed_;
  std::vector<param_write> param_writes_;
  int planning_op_ = -1;
  bool frozen_ = false;
};

/// Whether a gradient flows back into the traced value v: its slot takes one and v is not detached
/// (nn::detach marks the var, not the slot). An op that reads its input by slot asks this, not the
/// slot alone, or a detached input would still pass the gradient on.
template <class V>
bool grad_flows(const var<V>& v) {
  return !v.no_grad() && v.graph()->template requires_grad<V>(v.slot());
}

/// Whether a contribution to the target adds to what it holds (else it is the target's first write:
/// a later one in this backward, or a parameter's gradient while micro-batches accumulate).
template <class V>
bool accumulates(const graph& g, const grad_target<V>& t) {
  return !t.first || (t.is_param && g.accumulate_params);
}

/// Sums the full-shape gradient `full` of a broadcast operand into its target.
template <class V>
void apply_summed_grad(graph& g, const grad_target<V>& t, const tensor<V>& full) {
  tensor<V> dst = t.t;
  dp::detail::reduce_into<dp::detail::sum_reduce>(dst, dp::detail::tensor_node<V>{full}, dp::detail::eager_ctx{}, false,
                                                  accumulates(g, t));
}

/// Writes `node` into a gradient target: a write for the first contribution, else an addition.
/// An expression smaller than the target (the gradient of a reduction) is broadcast. One larger than
/// the target (the gradient of a broadcast operand) is first evaluated at its full shape and then
/// summed: the reduction then runs on a plain tensor, which is compiled once for all gradients
/// instead of once per gradient expression (a derived model's compile time depends on this).
template <class V, class Node>
void apply_grad(graph& g, const grad_target<V>& t, const Node& node) {
  tensor<V> dst = t.t;
  const dp::shape& s = dp::detail::meta_of(node).shape;
  if (broadcastable_to(s, dst.shape())) {
    if (accumulates(g, t)) {
      dp::detail::assign_node<true>(dst, node, dp::detail::eager_ctx{});
    } else {
      dp::detail::assign_node<false>(dst, node, dp::detail::eager_ctx{});
    }
  } else {
    tensor<V> full = empty<V>(s, dst.device());
    dp::detail::assign_node(full, node, dp::detail::eager_ctx{});
    apply_summed_grad(g, t, full);
  }
}

/// Zeroes a first-claimed target that receives nothing (a structurally zero gradient).
template <class V>
void apply_zero_grad(graph& g, const grad_target<V>& t) {
  if (!accumulates(g, t)) {
    tensor<V>(t.t).fill(V(0));
  }
}

/// Marks `g` as the graph being traced on this thread for the scope's lifetime.
class trace_scope {
 public:
  explicit trace_scope(graph* g) noexcept : prev_(tracing_graph()) { tracing_graph() = g; }
  ~trace_scope() { tracing_graph() = prev_; }
  trace_scope(const trace_scope&) = delete;
  trace_scope& operator=(const trace_scope&) = delete;

 private:
  graph* prev_;
};

}  // namespace detail
}  // namespace dp::inline DP_ABI::nn

namespace dp::inline DP_ABI::detail {

template <class V>
struct leaf_traits<nn::detail::slot_node<V>> {
  static constexpr bool is_leaf = true;
  static node_meta meta(const nn::detail::slot_node<V>& n) { return {n.shape, n.dev, true}; }
  static const tensor<V>& get(const nn::detail::slot_node<V>& n) {
    return n.grad ? n.g->template grad<V>(n.slot) : n.g->template value<V>(n.slot);
  }
  template <class Ctx>
  static leaf_view view(const nn::detail::slot_node<V>& n, const Ctx&) {
    const tensor<V>& t = get(n);
    return {t.storage().get(), t.storage_offset(), t.shape(), t.strides(), sizeof(V)};
  }
  template <class Ctx>
  static load_eval<V> make(const nn::detail::slot_node<V>& n, const Ctx&, const index_t* st, int rank) {
    return make_load_eval<V>(get(n).data(), st, rank);
  }
};

template <class V>
inline constexpr bool traced_leaf_v<nn::detail::slot_node<V>> = true;

template <class V>
struct operand_adapter<nn::var<V>> {
  using node_type = nn::detail::slot_node<V>;
  static node_type make(const nn::var<V>& v) {
    return {v.graph(), v.slot(), false, v.no_grad(), v.shape(), v.device()};
  }
};

}  // namespace dp::inline DP_ABI::detail
