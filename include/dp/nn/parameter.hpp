// nn::parameter and nn::buffer: the only tensors a model may hold. Parameters are trained (they get
// gradients); buffers are state that is not trained but is kept in sync across replicas by a
// declared policy (batch_norm's running statistics: their mean). Both copy by value: copying a model
// gives an independent model.
#pragma once

#include <cmath>
#include <cstdint>
#include <type_traits>
#include <utility>

#include <dp/core/element_types.hpp>
#include <dp/core/tensor.hpp>
#include <dp/exec/factory.hpp>
#include <dp/expr/node.hpp>
#include <dp/expr/operators.hpp>

namespace dp::inline DP_ABI::nn {

namespace detail {
class graph;
/// The graph a trainer is tracing on this thread (nullptr outside a trace): nn::update records its
/// buffer writes there, so they are replayed on every step.
inline graph*& tracing_graph() {
  thread_local graph* g = nullptr;
  return g;
}
}  // namespace detail

namespace detail {
struct init_state {
  std::uint64_t seed = 0;
  std::uint64_t counter = 0;
};
/// Where parameter initialisation draws from: a seed and the number of tensors drawn so far.
inline init_state& init_stream() {
  thread_local init_state s;
  return s;
}
struct param_access;

/// Assigning a parameter or buffer: values are written into the target's storage (which a trainer
/// may own); an empty target takes a copy.
template <class T>
void assign_same_shape(tensor<T>& to, const tensor<T>& from, const char* what) {
  if (!to.defined()) {
    to = from.defined() ? from.clone() : tensor<T>{};
    return;
  }
  DP_CHECK(from.defined(), value_error, "dp: assigning a ", what, " without a value to one of shape ", to.shape(),
           " (it would detach its memory)");
  DP_CHECK(to.shape() == from.shape(), shape_error, "dp: assigning a ", what, " of shape ", from.shape(),
           " to one of shape ", to.shape(), ": a ", what, " keeps its shape (its memory may belong to a trainer)");
  to.assign(from.device() == to.device() ? from : from.to(to.device()));  // a new layer is made on the host
}
}  // namespace detail

/// Seeds parameter initialisation (like torch.manual_seed): models built after this call, in the same
/// order, get the same weights. Each initialised tensor takes the next Philox stream of the seed.
inline void manual_seed(std::uint64_t seed) { detail::init_stream() = {seed, 0}; }

/// Seeds initialisation for a scope and restores the previous state after it.
class seed_scope {
 public:
  explicit seed_scope(std::uint64_t seed) : saved_(detail::init_stream()) { manual_seed(seed); }
  ~seed_scope() { detail::init_stream() = saved_; }
  seed_scope(const seed_scope&) = delete;
  seed_scope& operator=(const seed_scope&) = delete;

 private:
  detail::init_state saved_;
};

namespace init {
/// U(-bound, bound) from the next initialisation stream.
template <class T = float>
tensor<T> uniform(const shape& s, T bound) {
  DP_CHECK(std::isfinite(bound + bound) && bound >= T(0), value_error, "dp: init::uniform: bound ", bound,
           " must be finite and >= 0 with a finite 2 * bound (the values lie in [-bound, bound))");
  auto& st = detail::init_stream();
  return tensor<T>(
      dp::detail::generator(dp::detail::uniform_gen<T>{st.seed, 0x1000 + st.counter++, -bound, bound}, s, dp::cpu()));
}
/// N(0, stddev^2) from the next initialisation stream.
template <class T = float>
tensor<T> normal(const shape& s, T stddev) {
  DP_CHECK(std::isfinite(stddev) && stddev >= T(0), value_error, "dp: init::normal: stddev ", stddev,
           " must be finite and >= 0");
  auto& st = detail::init_stream();
  return tensor<T>(
      dp::detail::generator(dp::detail::normal_gen<T>{st.seed, 0x1000 + st.counter++, T(0), stddev}, s, dp::cpu()));
}
}  // namespace init

/// A trained tensor. Its gradient lives in the trainer's flat gradient buffer (grad() is undefined
/// until a trainer or dp::parallel owns the model).
template <class T = float>
class parameter {
 public:
  using value_type = T;

  parameter() = default;
  parameter(tensor<T> v) : value_(std::move(v)) {}  // NOLINT(google-explicit-constructor): `parameter<float> p{t}`
  parameter(const parameter& o) : value_(o.value_.defined() ? o.value_.clone() : tensor<T>{}) {}
  parameter(parameter&&) noexcept = default;
  /// Assignment writes values into this parameter's own memory (a trainer's flat buffer keeps seeing
  /// them: `model.fc = nn::linear<4, 2>{}` cannot detach the weights the optimizer updates), and
  /// needs the same shape.
  parameter& operator=(const parameter& o) {
    if (this != &o) {
      detail::assign_same_shape(value_, o.value_, "parameter");
    }
    return *this;
  }
  parameter& operator=(parameter&& o) { return *this = static_cast<const parameter&>(o); }

  const tensor<T>& value() const noexcept { return value_; }
  const tensor<T>& grad() const noexcept { return grad_; }
  const dp::shape& shape() const noexcept { return value_.shape(); }
  dp::device device() const noexcept { return value_.device(); }
  index_t numel() const noexcept { return value_.numel(); }

  /// Writes new values into the parameter's own memory (its storage is never replaced, so a
  /// trainer that owns it keeps seeing it).
  template <class E>
  void assign(const E& values) {
    if (value_.defined()) {
      value_.assign(values);
    } else {
      value_ = tensor<T>(values).clone();
    }
  }

 private:
  friend struct detail::param_access;
  tensor<T> value_;
  tensor<T> grad_;
};

/// How a buffer is kept equal across replicas after a training step.
enum class buffer_sync : std::uint8_t {
  mean,   ///< the mean over replicas (running statistics)
  first,  ///< replica 0's value (counters that are equal anyway)
};

/// A tensor of model state that is not trained (running statistics, counters).
template <class T = float>
class buffer {
  static_assert(dp::detail::model_element<T>,
                "dp: nn::buffer<T> holds float, double or std::int64_t (the element types replicas keep in sync "
                "and checkpoints store): declare the buffer with one of them");

 public:
  using value_type = T;

  buffer() = default;
  buffer(tensor<T> v, buffer_sync sync = buffer_sync::mean)  // NOLINT(google-explicit-constructor)
      : value_(std::move(v)), sync_(sync) {}
  buffer(const buffer& o) : value_(o.value_.defined() ? o.value_.clone() : tensor<T>{}), sync_(o.sync_) {}
  buffer(buffer&&) noexcept = default;
  /// Like parameter's: writes in place, same shape.
  buffer& operator=(const buffer& o) {
    if (this != &o) {
      detail::assign_same_shape(value_, o.value_, "buffer");
      sync_ = o.sync_;
    }
    return *this;
  }
  buffer& operator=(buffer&& o) { return *this = static_cast<const buffer&>(o); }

  const tensor<T>& value() const noexcept { return value_; }
  const dp::shape& shape() const noexcept { return value_.shape(); }
  dp::device device() const noexcept { return value_.device(); }
  buffer_sync sync() const noexcept { return sync_; }

  template <class E>
  void assign(const E& values) {
    if (value_.defined()) {
      value_.assign(values);
    } else {
      value_ = tensor<T>(values).clone();
    }
  }

 private:
  friend struct detail::param_access;
  tensor<T> value_;
  buffer_sync sync_ = buffer_sync::mean;
};

namespace detail {
/// The library's access to a parameter's storage (rebinding to flat buffers, device moves).
struct param_access {
  template <class T>
  static tensor<T>& value(parameter<T>& p) {
    return p.value_;
  }
  template <class T>
  static tensor<T>& grad(parameter<T>& p) {
    return p.grad_;
  }
  template <class T>
  static tensor<T>& value(buffer<T>& b) {
    return b.value_;
  }
  template <class T>
  static buffer_sync& sync(buffer<T>& b) {
    return b.sync_;
  }
};

template <class X>
struct is_parameter : std::false_type {};
template <class T>
struct is_parameter<parameter<T>> : std::true_type {};
template <class X>
struct is_buffer : std::false_type {};
template <class T>
struct is_buffer<buffer<T>> : std::true_type {};
}  // namespace detail

template <class X>
concept parameter_type = detail::is_parameter<std::remove_cvref_t<X>>::value;
template <class X>
concept buffer_type = detail::is_buffer<std::remove_cvref_t<X>>::value;

// Operators are found by argument-dependent lookup; parameters and traced values live in dp::nn,
// so dp's operators are made visible here too (`scale * 2.f` where scale is a parameter).
using dp::operator+;
using dp::operator-;
using dp::operator*;
using dp::operator/;
using dp::operator<;
using dp::operator<=;
using dp::operator>;
using dp::operator>=;
using dp::operator==;
using dp::operator!=;
using dp::operator&&;
using dp::operator||;
using dp::operator!;

}  // namespace dp::inline DP_ABI::nn

namespace dp::inline DP_ABI::detail {

/// A parameter inside an expression: its values, and the gradient it receives when traced.
template <class T>
struct param_node {
  using value_type = T;
  tensor<T> value;
  tensor<T> grad;
  const void* id;
};

/// A parameter in an expression evaluated at once while a step is traced (`dp::sum(w * w)`, or
/// `dp::matmul(A, B)` of two parameters): the value would be computed once, at the trace, and be a
/// constant to every replayed step, stale after the optimizer's update and with no gradient.
template <class T>
void check_eager_leaf(const param_node<T>& p) {
  DP_CHECK(nn::detail::tracing_graph() == nullptr || !p.grad.defined(), value_error,
           "dp: a traced forward computes a value from parameters alone (an expression, reduction or matmul with no "
           "traced input; one operand is a parameter of shape ",
           p.value.shape(),
           "): it would be computed once, when the step is traced, and be a stale constant with no gradient on every "
           "later step; compute it from a traced value instead (dp::matmul(dp::matmul(x, A), B) rather than "
           "dp::matmul(x, dp::matmul(A, B)); x * w * w rather than x * (w * w)); a penalty on the weights belongs "
           "in the optimizer (weight_decay)");
}

template <class T>
struct leaf_traits<param_node<T>> {
  static constexpr bool is_leaf = true;
  static node_meta meta(const param_node<T>& n) { return {n.value.shape(), n.value.device(), true}; }
  template <class Ctx>
  static leaf_view view(const param_node<T>& n, const Ctx&) {
    return {n.value.storage().get(), n.value.storage_offset(), n.value.shape(), n.value.strides(), sizeof(T)};
  }
  template <class Ctx>
  static load_eval<T> make(const param_node<T>& n, const Ctx&, const index_t* st, int rank) {
    return make_load_eval<T>(n.value.data(), st, rank);
  }
};

template <class T>
struct operand_adapter<nn::parameter<T>> {
  using node_type = param_node<T>;
  static node_type make(const nn::parameter<T>& p) {
    DP_CHECK(p.value().defined(), value_error, "dp: a parameter without a value was used in an expression");
    return {p.value(), p.grad(), &p};
  }
};

/// Buffers are constants inside expressions.
template <class T>
struct operand_adapter<nn::buffer<T>> {
  using node_type = tensor_node<T>;
  static node_type make(const nn::buffer<T>& b) {
    DP_CHECK(b.value().defined(), value_error, "dp: a buffer without a value was used in an expression");
    return {b.value()};
  }
};

}  // namespace dp::inline DP_ABI::detail

namespace dp::inline DP_ABI::nn::detail {

/// check_eager_leaf's rule for a layer that reads its weights directly when its input is not traced
/// (a linear layer applied to a constant inside a traced forward).
template <class T>
void check_eager_parameter(const parameter<T>& p) {
  dp::detail::check_eager_leaf(dp::detail::operand_adapter<parameter<T>>::make(p));
}

}  // namespace dp::inline DP_ABI::nn::detail
