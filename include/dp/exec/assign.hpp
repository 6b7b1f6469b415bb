// Assignment of an expression to a tensor: shape and device checks, the alias check, and dispatch
// to the executor of the destination's device. This is the one path every element-wise pass takes.
#pragma once

#include <cstdint>

#include <dp/config.hpp>
#include <dp/core/error.hpp>
#include <dp/core/tensor.hpp>
#include <dp/core/write_guard.hpp>
#include <dp/exec/cpu.hpp>
#include <dp/exec/plan.hpp>
#include <dp/expr/node.hpp>

#if DP_HAS_CUDA
#include <dp/exec/cuda.hpp>
#endif

namespace dp::inline DP_ABI {

namespace detail {

/// Element range [lo, hi] a view can touch (strides are non-negative).
inline std::pair<index_t, index_t> touched_range(index_t offset, const shape& shp, const shape& st) {
  index_t hi = offset;
  for (int i = 0; i < shp.rank(); ++i) {
    hi += (shp[i] - 1) * st[i];
  }
  return {offset, hi};
}

/// True when a leaf of another storage block reads bytes dst writes. Blocks from dp's pools never
/// share bytes, but memory adopted from elsewhere is one block per import: two DLPack imports of a
/// PyTorch tensor and its slice (or of a view of dp's own export) overlap under different blocks.
template <class T>
bool adopted_bytes_overlap(const storage* s, const leaf_view& v, const tensor<T>& dst) {
  const storage* d = dst.storage().get();
  if ((s->size_class >= 0 && d->size_class >= 0) || !(s->dev == d->dev)) {
    return false;
  }
  const auto [lo, hi] = touched_range(v.offset, v.shape, v.strides);
  const auto [dlo, dhi] = touched_range(dst.storage_offset(), dst.shape(), dst.strides());
  if (hi < lo || dhi < dlo) {  // an empty view touches nothing
    return false;
  }
  const auto at = [](const storage* b, index_t i, std::size_t size) {
    return reinterpret_cast<std::uintptr_t>(b->data) + static_cast<std::uintptr_t>(i) * size;
  };
  // Half-open byte ranges.
  return at(s, lo, v.elem_size) < at(d, dhi + 1, sizeof(T)) && at(d, dlo, sizeof(T)) < at(s, hi + 1, v.elem_size);
}

/// True when some leaf reads memory that dst writes, other than element-for-element: the
/// expression must then be evaluated into a temporary first (x = x.t() + 1). On the host an
/// expression that may fault needs one when it reads dst at all (x /= y with a zero in y must leave x
/// as it was); a GPU's faults are seen after the kernel, so the temporary would protect nothing there.
template <class T, class Node, class Ctx>
bool needs_temporary(const tensor<T>& dst, const Node& node, const Ctx& ctx) {
  if constexpr (leaf_count_v<Node> == 0) {
    return false;
  } else {
    const auto views = leaf_views(node, ctx);
    const auto [dlo, dhi] = touched_range(dst.storage_offset(), dst.shape(), dst.strides());
    for (const auto& v : views) {
      if (v.storage == nullptr) {
        continue;
      }
      if (v.storage != dst.storage().get()) {
        if (adopted_bytes_overlap(static_cast<const storage*>(v.storage), v, dst)) {
          return true;
        }
        continue;
      }
      const shape al = aligned_strides(v.shape, v.strides, dst.shape());
      bool same = v.offset == dst.storage_offset() && v.elem_size == sizeof(T);
      for (int i = 0; i < dst.rank() && same; ++i) {
        same = dst.shape()[i] == 1 || al[i] == dst.strides()[i];
      }
      if (same && !(may_fault_v<Node> && dst.device().is_cpu())) {
        continue;
      }
      const auto [lo, hi] = touched_range(v.offset, v.shape, v.strides);
      if (lo <= dhi && dlo <= hi) {
        return true;
      }
    }
    return false;
  }
}

/// Runs `node` into dst's memory, or adds it there with Acc (no checks).
template <bool Acc = false, class T, class Node, class Ctx>
void run_into(const tensor<T>& dst, const Node& node, const Ctx& ctx) {
  // The iteration and the evaluator (not a structured binding: clang 14 cannot capture one).
  const auto plan = plan_iteration(node, ctx, dst.shape(), dst.strides());
  on_device(dst.device(), [&](auto on) { elementwise<Acc>(on, dst.data(), plan.first, plan.second); });
}

/// dst = node (or dst += node with Acc), with checks; `ctx` resolves leaves that are not plain tensors.
/// Acc is a compile-time choice so that forward passes compile only the plain store.
template <bool Acc = false, class T, class Node, class Ctx>
void assign_node(tensor<T>& dst, const Node& node, const Ctx& ctx) {
  const node_meta m = meta_of(node);
  if (!dst.defined()) {
    dst = empty<T>(m.shape, m.has_device ? m.dev : cpu());
  } else {
    DP_CHECK(broadcastable_to(m.shape, dst.shape()), shape_error, "dp: assignment: an expression of shape ", m.shape,
             " cannot be written into a tensor of shape ", dst.shape());
    DP_CHECK(!m.has_device || m.dev == dst.device(), device_error, "dp: assignment: the expression is on ", m.dev,
             " but the destination is on ", dst.device(), "; move one with .to(device)");
  }
  if (dst.numel() == 0) {
    return;
  }
  if (needs_temporary(dst, node, ctx)) {
    tensor<T> tmp = empty<T>(dst.shape(), dst.device());
    run_into(tmp, node, ctx);
    check_expression_faults();  // before dst is touched (a GPU's faults are seen at its next read)
    run_into<Acc>(dst, tensor_node<T>{tmp}, eager_ctx{});
  } else {
    run_into<Acc>(dst, node, ctx);
  }
  check_expression_faults();
}

/// Refuses a destination whose elements share memory: a dimension of several elements at stride 0
/// (a broadcast view, or such an import) would get whichever thread's value landed last.
template <class T>
void check_distinct_elements(const tensor<T>& dst, const char* op) {
  for (int i = 0; i < dst.rank() && dst.numel() > 0; ++i) {  // an empty tensor's strides may be 0 anywhere
    DP_CHECK(dst.shape()[i] <= 1 || dst.strides()[i] != 0, value_error, "dp: ", op, ": the destination of shape ",
             dst.shape(), " has strides ", dst.strides(), ": the ", dst.shape()[i], " elements along dimension ", i,
             " share one memory location (a broadcast view), so a write would keep whichever came last; write into "
             "the tensor the view was made from, or into a clone()");
  }
}

/// `node` as it is stored into elements of type T (an assignment, nn::update): a float into an integer
/// type is range-checked as dp::cast is (undefined outside the range, NaN included), an integer into
/// one that does not hold all its values is too (it would wrap); anything else converts as C++ does.
template <class T, class Node>
auto stored_as(const Node& node) {
  using S = typename Node::value_type;
  if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool> && std::is_floating_point_v<S>) {
    return make_unary_node(cast_op<T>{}, node);
  } else if constexpr (narrow_op<T>::template may_fault<S>) {
    return make_unary_node(narrow_op<T>{}, node);
  } else {
    return node;
  }
}

/// The public write (=, +=, assign): assign_node behind the write guard.
template <class T, class E>
void assign(tensor<T>& dst, const E& e) {
  if (dst.defined()) {
    check_writable(dst.storage().get());
    check_distinct_elements(dst, "assignment");
  }
  check_eager(to_node(e));
  assign_node(dst, stored_as<T>(node_of<E>(to_node(e))), eager_ctx{});
}

}  // namespace detail
}  // namespace dp::inline DP_ABI
