// Expression nodes and their evaluators.
//
// A node holds its children by value; leaves hold counted tensor handles, so an expression kept in
// `auto` keeps its operands alive and never dangles. Shapes are broadcast (and devices checked) when a
// node is built, so a mismatch is reported on the line that wrote it. To run, a node tree becomes an
// evaluator tree: trivially copyable, holding raw pointers and strides collapsed for the iteration
// at hand; the same evaluator runs in the CPU loop and in a CUDA kernel.
#pragma once

#include <array>
#include <tuple>
#include <type_traits>
#include <utility>

#include <dp/config.hpp>
#include <dp/core/device_status.hpp>
#include <dp/core/error.hpp>
#include <dp/core/operand.hpp>
#include <dp/core/shape.hpp>
#include <dp/core/tensor.hpp>
#include <dp/expr/functional.hpp>

namespace dp::inline DP_ABI {
namespace detail {

/// Shape and device of a node, computed when it is built.
struct node_meta {
  dp::shape shape;
  dp::device dev = dp::cpu();
  bool has_device = false;
};

// ------------------------------------------------------------------------------------------ nodes
// Two kinds of node. Leaves (tensors, generators, nn's traced slots and parameters) follow the leaf
// protocol below. Every other node is an operation with children: it says what its children are
// (`children()`: references in leaf order) and how to evaluate itself from their evaluators
// (`evaluator(e...)`); counting, visiting and indexing leaves, building evaluators and finding
// traced leaves are written once for all of them. A new kind of node is one struct with these two
// members (and, if it can appear in a traced forward pass, its derivative in nn/autograd/derive.hpp).
template <class F, class E>
struct unary_eval;
template <class F, class Tc, class EA, class EB>
struct binary_eval;
template <class T, bool Lazy, class EC, class EA, class EB>
struct select_eval;
template <class F, class Tc, class EA, class EB, class EC>
struct ternary_eval;

template <class T>
struct scalar_node {
  using value_type = T;
  T value;
};

template <class T>
struct tensor_node {
  using value_type = T;
  tensor<T> t;
};

/// A leaf whose value is computed from its logical (row-major) index: arange, random numbers.
template <class G>
struct generator_node {
  using value_type = typename G::value_type;
  G gen;
  node_meta meta;
};

template <class F, class A>
struct unary_node {
  using operand_type = typename A::value_type;
  using value_type = std::invoke_result_t<F, operand_type>;
  F f;
  A a;
  node_meta meta;

  auto children() const { return std::tie(a); }
  template <class EA>
  auto evaluator(EA ea) const {
    return unary_eval<F, EA>{f, ea};
  }
};

/// Element type two operands are computed in: equal types, or bool with anything (bool converts).
template <class A, class B>
struct promote {
  static constexpr bool ok = std::is_same_v<A, B> || std::is_same_v<A, bool> || std::is_same_v<B, bool>;
  using type = std::conditional_t<std::is_same_v<A, bool>, B, A>;
};

template <class F, class A, class B>
struct binary_node {
  using operand_type = typename promote<typename A::value_type, typename B::value_type>::type;
  using value_type = std::invoke_result_t<F, operand_type, operand_type>;
  F f;
  A a;
  B b;
  node_meta meta;

  auto children() const { return std::tie(a, b); }
  template <class EA, class EB>
  auto evaluator(EA ea, EB eb) const {
    return binary_eval<F, operand_type, EA, EB>{f, ea, eb};
  }
};

/// where(c, a, b): a where c is true (non-zero), else b.
template <class C, class A, class B>
struct select_node {
  using value_type = typename promote<typename A::value_type, typename B::value_type>::type;
  C c;
  A a;
  B b;
  node_meta meta;

  auto children() const { return std::tie(c, a, b); }
  template <class EC, class EA, class EB>
  auto evaluator(EC ec, EA ea, EB eb) const;  // after may_fault_v
};

/// f(a, b, c) for a ternary functor (derived backward passes use these).
template <class F, class A, class B, class C>
struct ternary_node {
  using operand_type = typename promote<typename promote<typename A::value_type, typename B::value_type>::type,
                                        typename C::value_type>::type;
  using value_type = std::invoke_result_t<F, operand_type, operand_type, operand_type>;
  F f;
  A a;
  B b;
  C c;
  node_meta meta;

  auto children() const { return std::tie(a, b, c); }
  template <class EA, class EB, class EC>
  auto evaluator(EA ea, EB eb, EC ec) const {
    return ternary_eval<F, operand_type, EA, EB, EC>{f, ea, eb, ec};
  }
};

// ------------------------------------------------------------------------------------------ leaves
/// How a leaf is laid out in memory, for iteration planning and alias checks.
struct leaf_view {
  const void* storage = nullptr;  // identity of the storage block (nullptr: computed values)
  index_t offset = 0;
  dp::shape shape;
  dp::shape strides;
  std::size_t elem_size = 0;
};

/// Leaf protocol: `view(node, ctx)` and `make(node, ctx, strides, rank)`. Specialised for tensor
/// and generator leaves here, for traced variables in nn.
template <class N>
struct leaf_traits;

template <class N>
concept leaf_node = requires { leaf_traits<N>::is_leaf; };

/// An operation node: one with children (see "nodes" above).
template <class N>
concept interior_node = requires(const N& n) { n.children(); };

/// The type of child I of an operation node.
template <std::size_t I, interior_node N>
using child_t = std::remove_cvref_t<std::tuple_element_t<I, decltype(std::declval<const N&>().children())>>;

template <class N>
inline constexpr int leaf_count_v = 1;
template <class T>
inline constexpr int leaf_count_v<scalar_node<T>> = 0;
template <interior_node N>
inline constexpr int leaf_count_v<N> = []<std::size_t... I>(std::index_sequence<I...>) {
  return (leaf_count_v<child_t<I, N>> + ... + 0);
}(std::make_index_sequence<std::tuple_size_v<decltype(std::declval<const N&>().children())>>{});

/// Whether evaluating N can meet a fault (core/faults.hpp): some operation's functor says so for its
/// operand type (an integer division, a float-to-integer cast). Such a pass gives 0 where it faulted
/// and throws after it, so a destination the expression reads must not be written before the throw.
template <class N>
constexpr bool op_may_fault() {
  if constexpr (requires {
                  typename N::operand_type;
                  N::f;
                }) {
    using F = std::remove_cvref_t<decltype(N::f)>;
    if constexpr (requires { F::template may_fault<typename N::operand_type>; }) {
      return F::template may_fault<typename N::operand_type>;
    }
  }
  return false;
}
template <class N>
inline constexpr bool may_fault_v = false;
template <interior_node N>
inline constexpr bool may_fault_v<N> = op_may_fault<N>() || []<std::size_t... I>(std::index_sequence<I...>) {
  return (may_fault_v<child_t<I, N>> || ... || false);
}(std::make_index_sequence<std::tuple_size_v<decltype(std::declval<const N&>().children())>>{});

template <class C, class A, class B>
template <class EC, class EA, class EB>
auto select_node<C, A, B>::evaluator(EC ec, EA ea, EB eb) const {
  return select_eval < value_type, may_fault_v<A> || may_fault_v<B>, EC, EA, EB > {ec, ea, eb};
}

// All overloads are declared first: a node's children may be leaves from other namespaces (nn's
// traced values), for which argument-dependent lookup would not find overloads declared later.
template <class T, class Fn>
void for_each_leaf(const scalar_node<T>&, Fn&);
template <interior_node N, class Fn>
void for_each_leaf(const N& n, Fn& fn);
template <leaf_node N, class Fn>
void for_each_leaf(const N& n, Fn& fn);

template <class T, class Fn>
void for_each_leaf(const scalar_node<T>&, Fn&) {}
/// Visits the leaves in leaf order (children in the order children() lists them).
template <interior_node N, class Fn>
void for_each_leaf(const N& n, Fn& fn) {
  std::apply([&](const auto&... c) { (for_each_leaf(c, fn), ...); }, n.children());
}
template <leaf_node N, class Fn>
void for_each_leaf(const N& n, Fn& fn) {
  fn(n);
}

/// Called on each leaf of an expression evaluated at once (not as a recorded operation of a traced
/// step); a layer above overloads it for its own leaves, found by ADL (nn refuses a parameter while
/// a step is traced: the value would be computed once and get no gradient).
template <class L>
void check_eager_leaf(const L&) {}
template <class Node>
void check_eager(const Node& n) {
  auto fn = [](const auto& leaf) { check_eager_leaf(leaf); };
  for_each_leaf(n, fn);
}

template <std::size_t K, std::size_t I = 0, interior_node N>
const auto& leaf_at(const N& n);
template <std::size_t K, leaf_node N>
const N& leaf_at(const N& n);

/// Leaf K of the node (in leaf order).
template <std::size_t K, std::size_t I, interior_node N>
const auto& leaf_at(const N& n) {
  constexpr auto here = static_cast<std::size_t>(leaf_count_v<child_t<I, N>>);
  if constexpr (K < here) {
    return leaf_at<K>(std::get<I>(n.children()));
  } else {
    return leaf_at<K - here, I + 1>(n);
  }
}
template <std::size_t K, leaf_node N>
const N& leaf_at(const N& n) {
  static_assert(K == 0, "dp: internal: leaf index out of range");
  return n;
}

// ------------------------------------------------------------------------------------------ metadata
template <class T>
node_meta meta_of(const scalar_node<T>&) {
  return {};
}
template <leaf_node N>
node_meta meta_of(const N& n) {
  return leaf_traits<N>::meta(n);
}
template <class N>
  requires(!leaf_node<N> && requires(const N& n) { n.meta; })
const node_meta& meta_of(const N& n) {
  return n.meta;
}

DP_NOINLINE inline node_meta merge_meta(const node_meta& a, const node_meta& b, const char* op) {
  node_meta m;
  m.shape = broadcast_shapes(a.shape, b.shape, op);
  if (a.has_device && b.has_device) {
    DP_CHECK(a.dev == b.dev, device_error, "dp: ", op, ": operands are on ", a.dev, " and ", b.dev,
             "; move one with .to(device) so both are on the same device");
  }
  m.has_device = a.has_device || b.has_device;
  m.dev = a.has_device ? a.dev : b.dev;
  return m;
}

// ------------------------------------------------------------------------------------------ evaluators
// Interface: seek(coord) positions on a row (coord lists the outer collapsed dimensions), at<Unit>(i)
// reads element i of that row (Unit: every operand has inner stride 1, or reads copies of a value it
// broadcasts along the row), at_coord(c) reads the element at a full coordinate (the GPU's general
// path). for_each_leaf(f) calls f on every load and generator
// evaluator.

template <class T>
struct scalar_eval {
  T v;
  DP_HOST_DEVICE DP_FORCEINLINE void seek(const index_t*) {}
  template <class Visit>
  void for_each_leaf(Visit&&) {}
  template <bool Unit>
  DP_HOST_DEVICE DP_FORCEINLINE T at(index_t) const {
    return v;
  }
  DP_HOST_DEVICE DP_FORCEINLINE T at_coord(const index_t*) const { return v; }
};

template <class T>
struct load_eval {
  const T* base;
  const T* row;
  index_t st[max_rank];
  index_t inner;
  int rank;
  DP_HOST_DEVICE DP_FORCEINLINE void seek(const index_t* c) {
    index_t off = 0;
    for (int d = 0; d + 1 < rank; ++d) {
      off += c[d] * st[d];
    }
    row = base + off;
  }
  template <class Visit>
  void for_each_leaf(Visit&& f) {
    f(*this);
  }
  template <bool Unit>
  DP_HOST_DEVICE DP_FORCEINLINE T at(index_t i) const {
    if constexpr (Unit) {
      return row[i];
    } else {
      return row[i * inner];
    }
  }
  DP_HOST_DEVICE DP_FORCEINLINE T at_coord(const index_t* c) const {
    index_t off = 0;
    for (int d = 0; d < rank; ++d) {
      off += c[d] * st[d];
    }
    return base[off];
  }
};

/// Whether an evaluator reads memory (a broadcast one can then read copies of its value instead).
template <class E>
inline constexpr bool is_load_eval_v = false;
template <class T>
inline constexpr bool is_load_eval_v<load_eval<T>> = true;

template <class G>
struct gen_eval {
  using T = typename G::value_type;
  G g;
  index_t row;
  index_t st[max_rank];
  index_t inner;
  int rank;
  DP_HOST_DEVICE DP_FORCEINLINE void seek(const index_t* c) {
    index_t off = 0;
    for (int d = 0; d + 1 < rank; ++d) {
      off += c[d] * st[d];
    }
    row = off;
  }
  template <class Visit>
  void for_each_leaf(Visit&& f) {
    f(*this);
  }
  template <bool Unit>
  DP_HOST_DEVICE DP_FORCEINLINE T at(index_t i) const {
    return g(row + (Unit ? i : i * inner));
  }
  DP_HOST_DEVICE DP_FORCEINLINE T at_coord(const index_t* c) const {
    index_t off = 0;
    for (int d = 0; d < rank; ++d) {
      off += c[d] * st[d];
    }
    return g(off);
  }
};

template <class F, class E>
struct unary_eval {
  F f;
  E e;
  DP_HOST_DEVICE DP_FORCEINLINE void seek(const index_t* c) { e.seek(c); }
  template <class Visit>
  void for_each_leaf(Visit&& f) {
    e.for_each_leaf(f);
  }
  template <bool Unit>
  DP_HOST_DEVICE DP_FORCEINLINE auto at(index_t i) const {
    return f(e.template at<Unit>(i));
  }
  DP_HOST_DEVICE DP_FORCEINLINE auto at_coord(const index_t* c) const { return f(e.at_coord(c)); }
};

template <class F, class Tc, class EA, class EB>
struct binary_eval {
  F f;
  EA a;
  EB b;
  DP_HOST_DEVICE DP_FORCEINLINE void seek(const index_t* c) {
    a.seek(c);
    b.seek(c);
  }
  template <class Visit>
  void for_each_leaf(Visit&& f) {
    a.for_each_leaf(f);
    b.for_each_leaf(f);
  }
  template <bool Unit>
  DP_HOST_DEVICE DP_FORCEINLINE auto at(index_t i) const {
    return f(static_cast<Tc>(a.template at<Unit>(i)), static_cast<Tc>(b.template at<Unit>(i)));
  }
  DP_HOST_DEVICE DP_FORCEINLINE auto at_coord(const index_t* c) const {
    return f(static_cast<Tc>(a.at_coord(c)), static_cast<Tc>(b.at_coord(c)));
  }
};

/// Lazy: a branch may fault (an integer division, a float-to-integer cast), so only the chosen one
/// is computed: where(b != 0, a / b, 0) must not fault where b is 0, on any device or layout (a GPU's
/// general kernel computes one branch anyway). Otherwise both are, for the vectorised blend.
template <class T, bool Lazy, class EC, class EA, class EB>
struct select_eval {
  EC c;
  EA a;
  EB b;
  DP_HOST_DEVICE DP_FORCEINLINE void seek(const index_t* x) {
    c.seek(x);
    a.seek(x);
    b.seek(x);
  }
  template <class Visit>
  void for_each_leaf(Visit&& f) {
    c.for_each_leaf(f);
    a.for_each_leaf(f);
    b.for_each_leaf(f);
  }
  template <bool Unit>
  DP_HOST_DEVICE DP_FORCEINLINE T at(index_t i) const {
    if constexpr (Lazy) {
      return static_cast<bool>(c.template at<Unit>(i)) ? static_cast<T>(a.template at<Unit>(i))
                                                       : static_cast<T>(b.template at<Unit>(i));
    } else {
      const T va = static_cast<T>(a.template at<Unit>(i)), vb = static_cast<T>(b.template at<Unit>(i));
      return static_cast<bool>(c.template at<Unit>(i)) ? va : vb;
    }
  }
  DP_HOST_DEVICE DP_FORCEINLINE T at_coord(const index_t* x) const {
    return static_cast<bool>(c.at_coord(x)) ? static_cast<T>(a.at_coord(x)) : static_cast<T>(b.at_coord(x));
  }
};

template <class F, class Tc, class EA, class EB, class EC>
struct ternary_eval {
  F f;
  EA a;
  EB b;
  EC c;
  DP_HOST_DEVICE DP_FORCEINLINE void seek(const index_t* x) {
    a.seek(x);
    b.seek(x);
    c.seek(x);
  }
  template <class Visit>
  void for_each_leaf(Visit&& f) {
    a.for_each_leaf(f);
    b.for_each_leaf(f);
    c.for_each_leaf(f);
  }
  template <bool Unit>
  DP_HOST_DEVICE DP_FORCEINLINE auto at(index_t i) const {
    return f(static_cast<Tc>(a.template at<Unit>(i)), static_cast<Tc>(b.template at<Unit>(i)),
             static_cast<Tc>(c.template at<Unit>(i)));
  }
  DP_HOST_DEVICE DP_FORCEINLINE auto at_coord(const index_t* x) const {
    return f(static_cast<Tc>(a.at_coord(x)), static_cast<Tc>(b.at_coord(x)), static_cast<Tc>(c.at_coord(x)));
  }
};

/// The evaluation context for eager expressions (traced variables bring their own).
struct eager_ctx {};

/// Strides of each leaf, collapsed for one iteration, in leaf order.
struct leaf_strides {
  const index_t (*st)[max_rank];
  int rank;
};

template <class Ctx, class T>
auto make_eval(const scalar_node<T>& n, const Ctx&, const leaf_strides&, int&);
template <class Ctx, interior_node N>
auto make_eval(const N& n, const Ctx& ctx, const leaf_strides& ls, int& k);
template <class Ctx, leaf_node N>
auto make_eval(const N& n, const Ctx& ctx, const leaf_strides& ls, int& k);

template <class Ctx, class T>
auto make_eval(const scalar_node<T>& n, const Ctx&, const leaf_strides&, int&) {
  return scalar_eval<T>{n.value};
}
/// The children's evaluators in leaf order (a braced list is evaluated left to right, so leaf k
/// takes the k-th strides), then the node's own.
template <class Ctx, interior_node N>
auto make_eval(const N& n, const Ctx& ctx, const leaf_strides& ls, int& k) {
  return std::apply(
      [&](const auto&... c) {
        return std::apply([&](auto... e) { return n.evaluator(e...); }, std::tuple{make_eval(c, ctx, ls, k)...});
      },
      n.children());
}
template <class Ctx, leaf_node N>
auto make_eval(const N& n, const Ctx& ctx, const leaf_strides& ls, int& k) {
  const int idx = k++;
  return leaf_traits<N>::make(n, ctx, ls.st[idx], ls.rank);
}

template <class T>
load_eval<T> make_load_eval(const T* base, const index_t* st, int rank) {
  load_eval<T> e{};
  e.base = base;
  e.row = base;
  e.rank = rank;
  for (int d = 0; d < rank; ++d) {
    e.st[d] = st[d];
  }
  e.inner = st[rank - 1];
  return e;
}

template <class T>
struct leaf_traits<tensor_node<T>> {
  static constexpr bool is_leaf = true;
  static node_meta meta(const tensor_node<T>& n) { return {n.t.shape(), n.t.device(), true}; }
  template <class Ctx>
  static leaf_view view(const tensor_node<T>& n, const Ctx&) {
    return {n.t.storage().get(), n.t.storage_offset(), n.t.shape(), n.t.strides(), sizeof(T)};
  }
  template <class Ctx>
  static load_eval<T> make(const tensor_node<T>& n, const Ctx&, const index_t* st, int rank) {
    return make_load_eval<T>(n.t.data(), st, rank);
  }
};

template <class G>
struct leaf_traits<generator_node<G>> {
  static constexpr bool is_leaf = true;
  static node_meta meta(const generator_node<G>& n) { return n.meta; }
  template <class Ctx>
  static leaf_view view(const generator_node<G>& n, const Ctx&) {
    return {nullptr, 0, n.meta.shape, contiguous_strides(n.meta.shape), 0};
  }
  template <class Ctx>
  static gen_eval<G> make(const generator_node<G>& n, const Ctx&, const index_t* st, int rank) {
    gen_eval<G> e{};
    e.g = n.gen;
    e.rank = rank;
    for (int d = 0; d < rank; ++d) {
      e.st[d] = st[d];
    }
    e.inner = st[rank - 1];
    return e;
  }
};

}  // namespace detail

// ------------------------------------------------------------------------------------------ expr
/// A lazy tensor expression. It holds its operands (tensors by counted handle), so it is safe to
/// keep in `auto`; it is evaluated when assigned to a tensor, converted to one, or reduced.
template <class Node>
class expr {
 public:
  using node_type = Node;
  using value_type = typename Node::value_type;

  explicit expr(Node n) : node_(std::move(n)) {}

  const Node& node() const noexcept { return node_; }
  dp::shape shape() const { return detail::meta_of(node_).shape; }
  int rank() const { return shape().rank(); }
  index_t numel() const { return shape().numel(); }
  dp::device device() const { return detail::meta_of(node_).dev; }
  /// Evaluates into a new tensor.
  tensor<value_type> eval() const { return tensor<value_type>(*this); }

 private:
  Node node_;
};

namespace detail {

template <class T, class E>
struct operand_adapter<tensor<T, E>> {
  using node_type = tensor_node<T>;
  static node_type make(const tensor<T>& t) {
    DP_CHECK(t.defined(), value_error,
             "dp: an undefined tensor (default-constructed and never assigned) was used in an expression");
    return {t};
  }
};

template <class N>
struct operand_adapter<expr<N>> {
  using node_type = N;
  static const N& make(const expr<N>& e) { return e.node(); }
};

template <class X>
using node_of = typename operand_adapter<std::remove_cvref_t<X>>::node_type;

template <class X>
decltype(auto) to_node(const X& x) {
  return operand_adapter<std::remove_cvref_t<X>>::make(x);
}

/// A scalar operand as a node, in the element type of the other operand (or its own type when the
/// other operand is boolean, so `mask * 0.5` is not truncated to bool).
template <class Other, class S>
auto scalar_as_node(S s) {
  using other_t = typename Other::value_type;
  using T = std::conditional_t<std::is_same_v<other_t, bool>, S, other_t>;
  return scalar_node<T>{scalar_as<T>(s)};
}

/// A functor that can meet a fault on operands of type T (core/faults.hpp) flags it, on a GPU, in the
/// status word of the node's device.
template <class T, class F>
void wire_fault_status([[maybe_unused]] F& f, [[maybe_unused]] const node_meta& m) {
#if DP_HAS_CUDA
  if constexpr (requires { F::template may_fault<T>; }) {
    if constexpr (F::template may_fault<T>) {
      if (m.has_device && m.dev.is_cuda()) {
        f.device_status = device_status_word(m.dev.index);
      }
    }
  }
#endif
}

template <class F, class A>
auto make_unary_node(F f, A a) {
  node_meta m = meta_of(a);
  wire_fault_status<typename A::value_type>(f, m);
  return unary_node<F, A>{f, std::move(a), m};
}

template <class F, class A, class B>
auto make_binary_node(F f, A a, B b) {
  static_assert(promote<typename A::value_type, typename B::value_type>::ok,
                "dp: the operands have different element types (for example float and double); convert one with "
                "dp::cast<T>(x) so both match");
  node_meta m = merge_meta(meta_of(a), meta_of(b), F::name);
  wire_fault_status<typename binary_node<F, A, B>::operand_type>(f, m);
  return binary_node<F, A, B>{f, std::move(a), std::move(b), m};
}

template <class F, class A, class B, class C>
auto make_ternary_node(F f, A a, B b, C c) {
  node_meta m = merge_meta(merge_meta(meta_of(a), meta_of(b), F::name), meta_of(c), F::name);
  return ternary_node<F, A, B, C>{f, std::move(a), std::move(b), std::move(c), m};
}

/// True when some leaf of the node is a traced variable (specialised by nn for its slot leaves).
template <class N>
inline constexpr bool traced_leaf_v = false;
template <class N>
inline constexpr bool traced_v = traced_leaf_v<N>;
template <interior_node N>
inline constexpr bool traced_v<N> = []<std::size_t... I>(std::index_sequence<I...>) {
  return (traced_v<child_t<I, N>> || ...);
}(std::make_index_sequence<std::tuple_size_v<decltype(std::declval<const N&>().children())>>{});

template <class C, class A, class B>
auto make_select_node(C c, A a, B b) {
  static_assert(promote<typename A::value_type, typename B::value_type>::ok,
                "dp: where(c, a, b): a and b have different element types; convert one with dp::cast<T>(x)");
  node_meta m = merge_meta(merge_meta(meta_of(c), meta_of(a), "where"), meta_of(b), "where");
  return select_node<C, A, B>{std::move(c), std::move(a), std::move(b), m};
}

}  // namespace detail
}  // namespace dp::inline DP_ABI
