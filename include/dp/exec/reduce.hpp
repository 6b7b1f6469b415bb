// Reductions fused with their input expression: dp::sum(x * x) reads x once and never stores x * x.
// sum, mean, max, min over everything, one axis or a list of axes (keepdim as in PyTorch), and
// argmax/argmin. They return tensors (a reduction is evaluated before any expression that uses it).
#pragma once

#include <algorithm>
#include <initializer_list>
#include <limits>
#include <span>
#include <type_traits>

#include <dp/config.hpp>
#include <dp/core/tensor.hpp>
#include <dp/exec/cpu_reduce.hpp>
#include <dp/exec/factory.hpp>
#include <dp/exec/for_each.hpp>
#include <dp/exec/reduce_ops.hpp>
#include <dp/expr/node.hpp>
#include <dp/expr/operators.hpp>

#if DP_HAS_CUDA
#include <dp/exec/cuda.hpp>
#endif

namespace dp::inline DP_ABI {
namespace detail {

/// out = reduction of `node` over the dimensions where out's shape is 1 (or missing): out's shape
/// must broadcast to the node's shape. With `mean`, the result is divided by the reduced count.
template <class Op, class OutT, class Node, class Ctx>
void reduce_into(const tensor<OutT>& out, const Node& node, const Ctx& ctx, bool mean, bool accumulate = false) {
  using T = typename Node::value_type;
  using A = typename Op::template acc_t<T>;
  const node_meta m = meta_of(node);
  DP_CHECK(broadcastable_to(out.shape(), m.shape), shape_error, "dp: ", Op::name, ": a result of shape ", out.shape(),
           " does not reduce an input of shape ", m.shape);
  DP_CHECK(!m.has_device || m.dev == out.device(), device_error, "dp: ", Op::name, ": the input is on ", m.dev,
           " but the result is on ", out.device());
  if (out.numel() == 0) {
    return;
  }
  const index_t count = m.shape.numel() / out.numel();
  if (m.shape.numel() == 0) {
    DP_CHECK((std::is_same_v<Op, sum_reduce>), value_error, "dp: ", Op::name, " of an empty tensor (shape ", m.shape,
             ") has no value");
    if (!accumulate) {
      tensor<OutT>(out).fill(mean ? std::numeric_limits<OutT>::quiet_NaN() : OutT(0));
    }
    return;
  }
  const A scale = mean ? A(1) / static_cast<A>(count) : A(1);
  // The iteration and the evaluator (not a structured binding: clang 14 cannot capture one).
  const auto plan = plan_iteration(node, ctx, m.shape, aligned_strides(out.shape(), out.strides(), m.shape));
  on_device(out.device(),
            [&](auto on) { reduce_into<Op, A>(on, out.data(), plan.first, plan.second, scale, mean, accumulate); });
  check_expression_faults();
}

/// The keepdim result shape for reducing `axes` (all when empty and `all`).
inline shape reduced_shape(const shape& in, std::span<const int> axes, bool all, const char* op) {
  shape out = in;
  if (all) {
    for (int i = 0; i < out.rank(); ++i) {
      out[i] = 1;
    }
    return out;
  }
  // PyTorch's sum(x, dim=[]) reduces every axis, NumPy's sum(x, axis=()) none: refused, not guessed.
  DP_CHECK(!axes.empty(), value_error, "dp: ", op, ": an empty axis list reduces every axis in PyTorch and none in ",
           "NumPy; write dp::", op, "(x) for every axis, or use x itself for none");
  bool seen[max_rank] = {};
  for (int a : axes) {
    const int d = normalize_axis(a, in.rank(), op);
    DP_CHECK(!seen[d], value_error, "dp: ", op, ": axis ", a, " is listed twice");
    seen[d] = true;
    out[d] = 1;
  }
  return out;
}

/// max and min along an axis of size 0 have no value (PyTorch raises too); a sum is 0 and a mean
/// NaN. Another axis of size 0 leaves an empty result, not an error (`kd`: reduced_shape's).
template <class Op>
void check_reduced_axes(const shape& in, const shape& kd, const char* op) {
  if constexpr (!std::is_same_v<Op, sum_reduce>) {
    for (int i = 0; i < in.rank(); ++i) {
      DP_CHECK(!(in[i] == 0 && kd[i] == 1), value_error, "dp: ", op, " along an axis of size 0 (dimension ", i,
               " of shape ", in, ") has no value");
    }
  }
}

inline shape drop_reduced(const shape& in, std::span<const int> axes, bool all) {
  if (all) {
    return {};
  }
  bool drop[max_rank] = {};
  for (int a : axes) {
    drop[normalize_axis(a, in.rank(), "reduce")] = true;  // as reduced_shape resolved it
  }
  shape out;
  for (int i = 0; i < in.rank(); ++i) {
    if (!drop[i]) {
      out.push_back(in[i]);
    }
  }
  return out;
}

template <class Op, class OutT, class Node>
tensor<OutT> eager_reduce(const Node& node, std::span<const int> axes, bool all, bool keepdim, bool mean,
                          const char* op) {
  check_eager(node);
  const node_meta m = meta_of(node);
  const shape kd = reduced_shape(m.shape, axes, all, op);
  check_reduced_axes<Op>(m.shape, kd, op);
  tensor<OutT> out = empty<OutT>(kd, m.has_device ? m.dev : cpu());
  reduce_into<Op>(out, node, eager_ctx{}, mean);
  return keepdim ? out : out.reshape(drop_reduced(m.shape, axes, all));
}

template <class Op, class OutT, class E>
auto reduce(const E& e, std::span<const int> axes, bool all, bool keepdim, bool mean, const char* op) {
  const auto& node = to_node(e);
  if constexpr (traced_v<std::remove_cvref_t<decltype(node)>>) {
    // A value traced for training: record the reduction (nn/autograd/ops.hpp, found by ADL).
    return traced_reduce<Op, OutT>(node, axes, all, keepdim, mean, op);
  } else {
    return eager_reduce<Op, OutT>(node, axes, all, keepdim, mean, op);
  }
}

/// One axis, range-checked at its full 64 bits against the input's rank before it narrows to the int
/// an axis list holds (narrowing first read axis 2^32 as axis 0).
template <class Op, class OutT, class E>
auto reduce_along(const E& e, index_t axis, bool keepdim, bool mean, const char* op) {
  const int a = normalize_axis(axis, meta_of(to_node(e)).shape.rank(), op);
  return reduce<Op, OutT>(e, std::span<const int>(&a, 1), false, keepdim, mean, op);
}

template <class E>
using reduce_value_t = typename node_of<E>::value_type;

}  // namespace detail

/// Sum of all elements (a 0-d tensor; integers sum to int64, uint64 to uint64).
template <expression E>
auto sum(const E& e) {
  using T = detail::reduce_value_t<E>;
  return detail::reduce<detail::sum_reduce, detail::sum_result_t<T>>(e, {}, true, false, false, "sum");
}
/// Sum along `axis` (negative counts from the back).
template <expression E>
auto sum(const E& e, index_t axis, bool keepdim = false) {
  using T = detail::reduce_value_t<E>;
  return detail::reduce_along<detail::sum_reduce, detail::sum_result_t<T>>(e, axis, keepdim, false, "sum");
}
/// Sum along several axes.
template <expression E>
auto sum(const E& e, std::span<const int> axes, bool keepdim = false) {
  using T = detail::reduce_value_t<E>;
  return detail::reduce<detail::sum_reduce, detail::sum_result_t<T>>(e, axes, false, keepdim, false, "sum");
}
template <expression E>
auto sum(const E& e, std::initializer_list<int> axes, bool keepdim = false) {
  return sum(e, std::span<const int>(axes.begin(), axes.size()), keepdim);
}

template <expression E>
auto mean(const E& e) {
  using T = detail::reduce_value_t<E>;
  static_assert(std::is_floating_point_v<T>, "dp: mean needs floating-point values; use dp::cast<float>(x)");
  return detail::reduce<detail::sum_reduce, T>(e, {}, true, false, true, "mean");
}
template <expression E>
auto mean(const E& e, index_t axis, bool keepdim = false) {
  using T = detail::reduce_value_t<E>;
  static_assert(std::is_floating_point_v<T>, "dp: mean needs floating-point values; use dp::cast<float>(x)");
  return detail::reduce_along<detail::sum_reduce, T>(e, axis, keepdim, true, "mean");
}
template <expression E>
auto mean(const E& e, std::span<const int> axes, bool keepdim = false) {
  using T = detail::reduce_value_t<E>;
  static_assert(std::is_floating_point_v<T>, "dp: mean needs floating-point values; use dp::cast<float>(x)");
  return detail::reduce<detail::sum_reduce, T>(e, axes, false, keepdim, true, "mean");
}
template <expression E>
auto mean(const E& e, std::initializer_list<int> axes, bool keepdim = false) {
  return mean(e, std::span<const int>(axes.begin(), axes.size()), keepdim);
}

/// Largest element (NaN if any element is NaN). For the element-wise maximum see dp::maximum.
template <expression E>
auto max(const E& e) {
  return detail::reduce<detail::max_reduce, detail::reduce_value_t<E>>(e, {}, true, false, false, "max");
}
template <expression E>
auto max(const E& e, index_t axis, bool keepdim = false) {
  return detail::reduce_along<detail::max_reduce, detail::reduce_value_t<E>>(e, axis, keepdim, false, "max");
}
/// Largest element along several axes (torch.amax).
template <expression E>
auto max(const E& e, std::span<const int> axes, bool keepdim = false) {
  return detail::reduce<detail::max_reduce, detail::reduce_value_t<E>>(e, axes, false, keepdim, false, "max");
}
template <expression E>
auto max(const E& e, std::initializer_list<int> axes, bool keepdim = false) {
  return max(e, std::span<const int>(axes.begin(), axes.size()), keepdim);
}
template <expression E>
auto min(const E& e) {
  return detail::reduce<detail::min_reduce, detail::reduce_value_t<E>>(e, {}, true, false, false, "min");
}
template <expression E>
auto min(const E& e, index_t axis, bool keepdim = false) {
  return detail::reduce_along<detail::min_reduce, detail::reduce_value_t<E>>(e, axis, keepdim, false, "min");
}
/// Smallest element along several axes (torch.amin).
template <expression E>
auto min(const E& e, std::span<const int> axes, bool keepdim = false) {
  return detail::reduce<detail::min_reduce, detail::reduce_value_t<E>>(e, axes, false, keepdim, false, "min");
}
template <expression E>
auto min(const E& e, std::initializer_list<int> axes, bool keepdim = false) {
  return min(e, std::span<const int>(axes.begin(), axes.size()), keepdim);
}

namespace detail {

/// Whether x replaces v as the first extreme seen so far: NaN counts as the extreme, like PyTorch.
template <bool Max, class T>
DP_HOST_DEVICE DP_FORCEINLINE bool arg_replaces(T x, T v) {
  const bool better = Max ? (x > v) : (x < v);
  return (better && v == v) || (x != x && v == v);
}

/// The first largest (Max) or smallest value of each of `parts` consecutive pieces (of `len`) of
/// each row of a contiguous [rows, n] block: its index in the row, and its value when `value` is set.
/// Pieces let a few long rows (one, for argmax of a whole tensor) use every thread of a device.
template <class T, bool Max>
struct arg_extreme_parts {
  const T* in;
  T* value;
  std::int64_t* index;
  index_t n, parts, len;
  DP_HOST_DEVICE void operator()(index_t q) const {
    const T* row = in + (q / parts) * n;
    const index_t b = (q % parts) * len;
    const index_t e = n - b < len ? n : b + len;
    index_t best = b;
    T v = row[b];
    for (index_t i = b + 1; i < e; ++i) {
      if (arg_replaces<Max>(row[i], v)) {
        v = row[i];
        best = i;
      }
    }
    index[q] = best;
    if (value != nullptr) {
      value[q] = v;
    }
  }
};

/// Each row's pieces in order: the first piece holding the row's extreme holds its first index.
template <class T, bool Max>
struct arg_extreme_merge {
  const T* value;
  const std::int64_t* index;
  std::int64_t* out;
  index_t parts;
  DP_HOST_DEVICE void operator()(index_t r) const {
    const T* v = value + r * parts;
    index_t best = 0;
    T bv = v[0];
    for (index_t p = 1; p < parts; ++p) {
      if (arg_replaces<Max>(v[p], bv)) {
        bv = v[p];
        best = p;
      }
    }
    out[r] = index[r * parts + best];
  }
};

/// Rows are cut into pieces until about arg_pieces exist, each at least arg_piece(dev) elements: a
/// host thread's share (shorter rows stay one pass on one thread), 2048 on a GPU.
inline constexpr index_t arg_pieces = index_t{1} << 16;
constexpr index_t arg_piece(device dev) { return dev.is_cpu() ? parallel_grain : 2048; }

/// The first extreme index of each row of a contiguous [count, n] block, into out[count].
template <bool Max, class T>
void arg_extreme_rows(device dev, const T* in, std::int64_t* out, index_t count, index_t n) {
  const index_t wanted = ceil_div(count * n, arg_pieces);
  const index_t len = std::max(wanted, arg_piece(dev));
  const index_t parts = ceil_div(n, len);
  if (parts == 1) {
    for_each_index(dev, count, arg_extreme_parts<T, Max>{in, nullptr, out, n, 1, n}, 64);
    return;
  }
  tensor<T> value = empty<T>({count * parts}, dev);
  tensor<std::int64_t> index = empty<std::int64_t>({count * parts}, dev);
  for_each_index(dev, count * parts, arg_extreme_parts<T, Max>{in, value.data(), index.data(), n, parts, len}, 1);
  for_each_index(dev, count, arg_extreme_merge<T, Max>{value.data(), index.data(), out, parts}, 64);
}

template <bool Max, class E>
tensor<std::int64_t> arg_extreme(const E& e, index_t axis, bool all, bool keepdim, const char* op) {
  using T = reduce_value_t<E>;
  tensor<T> x = e;
  if (!all && x.rank() == 0) {          // a 0-d tensor's only axis (0 or -1) is all of it, as in PyTorch
    (void)normalize_axis(axis, 0, op);  // any other axis is still an error
    all = true;
  }
  if (all) {
    DP_CHECK(x.numel() > 0, value_error, "dp: ", op, " of an empty tensor (shape ", x.shape(), ") has no answer");
    tensor<T> flat = x.contiguous();
    tensor<std::int64_t> out = empty<std::int64_t>({1}, x.device());
    arg_extreme_rows<Max>(x.device(), flat.data(), out.data(), 1, x.numel());
    return keepdim ? out.reshape(shape::filled(x.rank(), 1)) : out.reshape({});
  }
  const int d = normalize_axis(axis, x.rank(), op);
  // Move the axis last and make rows contiguous.
  shape order;
  for (int i = 0; i < x.rank(); ++i) {
    if (i != d) {
      order.push_back(i);
    }
  }
  order.push_back(d);
  tensor<T> rows = x.permute(order).contiguous();
  const index_t n = x.shape()[d];
  DP_CHECK(n > 0, value_error, "dp: ", op, " along an axis of size 0 (shape ", x.shape(), ")");
  // Another axis of size 0 leaves no row: an empty answer (PyTorch's too), not an error.
  const index_t count = rows.numel() / n;
  tensor<std::int64_t> out = empty<std::int64_t>({count}, x.device());
  if (count > 0) {
    arg_extreme_rows<Max>(x.device(), rows.data(), out.data(), count, n);
  }
  shape kd = x.shape();
  kd[d] = 1;
  shape nd = x.shape();
  nd.erase(d);
  return out.reshape(keepdim ? kd : nd);
}

}  // namespace detail

/// Index (int64) of the first largest element of the flattened tensor.
template <expression E>
tensor<std::int64_t> argmax(const E& e) {
  return detail::arg_extreme<true>(e, 0, true, false, "argmax");
}
/// Indices of the first largest elements along `axis`.
template <expression E>
tensor<std::int64_t> argmax(const E& e, index_t axis, bool keepdim = false) {
  return detail::arg_extreme<true>(e, axis, false, keepdim, "argmax");
}
template <expression E>
tensor<std::int64_t> argmin(const E& e) {
  return detail::arg_extreme<false>(e, 0, true, false, "argmin");
}
template <expression E>
tensor<std::int64_t> argmin(const E& e, index_t axis, bool keepdim = false) {
  return detail::arg_extreme<false>(e, axis, false, keepdim, "argmin");
}

}  // namespace dp::inline DP_ABI
