// Iteration planning: the loop an executor runs for an expression over a target shape. Dimensions of
// extent 1 are dropped and neighbours merged wherever every operand allows, and the leaves' strides
// are aligned to the target (broadcasting), so that most passes become one flat loop.
#pragma once

#include <array>
#include <utility>

#include <dp/config.hpp>
#include <dp/core/shape.hpp>
#include <dp/expr/node.hpp>

namespace dp::inline DP_ABI::detail {

/// An iteration space shared by an output (operand 0) and N leaves: dimensions of extent 1 dropped
/// and neighbours merged wherever every operand allows, so most loops become one flat loop.
template <int N>
struct iteration {
  int rank = 1;
  index_t ext[max_rank] = {1};
  index_t st[N][max_rank] = {};
  index_t numel = 1;
  bool unit = true;         // every operand has inner stride 1 (or the inner extent is 1)
  bool leaves_unit = true;  // the same for operands 1..N-1 (reductions do not write per element)
};

/// Strides of a view aligned to an iteration shape (NumPy broadcasting: missing and size-1
/// dimensions get stride 0).
DP_NOINLINE inline dp::shape aligned_strides(const dp::shape& shp, const dp::shape& strides, const dp::shape& target) {
  dp::shape out = dp::shape::filled(target.rank(), 0);
  for (int i = 0; i < shp.rank(); ++i) {
    const int j = target.rank() - shp.rank() + i;
    out[j] = (shp[i] == 1 && target[j] != 1) ? 0 : strides[i];
  }
  return out;
}

template <int N>
iteration<N> make_iteration(const dp::shape& target, const std::array<dp::shape, N>& strides) {
  iteration<N> it;
  it.numel = target.numel();
  int r = 0;
  for (int i = 0; i < target.rank(); ++i) {
    if (target[i] == 1) {
      continue;
    }
    bool merge = r > 0;
    for (int op = 0; op < N && merge; ++op) {
      merge = it.st[op][r - 1] == strides[op][i] * target[i];
    }
    if (merge) {
      it.ext[r - 1] *= target[i];
      for (int op = 0; op < N; ++op) {
        it.st[op][r - 1] = strides[op][i];
      }
    } else {
      it.ext[r] = target[i];
      for (int op = 0; op < N; ++op) {
        it.st[op][r] = strides[op][i];
      }
      ++r;
    }
  }
  if (r == 0) {
    it.ext[0] = 1;
    for (int op = 0; op < N; ++op) {
      it.st[op][0] = 0;
    }
    r = 1;
  }
  it.rank = r;
  it.unit = it.leaves_unit = true;
  for (int op = 0; op < N; ++op) {
    const bool u = it.st[op][r - 1] == 1 || it.ext[r - 1] == 1;
    it.unit = it.unit && u;
    it.leaves_unit = it.leaves_unit && (op == 0 || u);
  }
  return it;
}

/// The layout of every leaf of `node`, in leaf order.
template <class Node, class Ctx>
std::array<leaf_view, leaf_count_v<Node>> leaf_views(const Node& node, const Ctx& ctx) {
  std::array<leaf_view, leaf_count_v<Node>> out{};
  int k = 0;
  auto fn = [&](const auto& leaf) { out[k++] = leaf_traits<std::remove_cvref_t<decltype(leaf)>>::view(leaf, ctx); };
  for_each_leaf(node, fn);
  return out;
}

/// Builds the iteration of `node` over `target` with operand 0 laid out as `out_strides`, and the
/// evaluator positioned on it.
template <class Node, class Ctx>
auto plan_iteration(const Node& node, const Ctx& ctx, const dp::shape& target, const dp::shape& out_strides) {
  constexpr int L = leaf_count_v<Node>;
  const auto views = leaf_views(node, ctx);
  std::array<dp::shape, L + 1> st;
  st[0] = out_strides;
  for (int k = 0; k < L; ++k) {
    st[k + 1] = aligned_strides(views[k].shape, views[k].strides, target);
  }
  const iteration<L + 1> it = make_iteration<L + 1>(target, st);
  leaf_strides ls{it.st + 1, it.rank};
  int k = 0;
  auto ev = make_eval(node, ctx, ls, k);
  return std::pair{it, ev};
}

}  // namespace dp::inline DP_ABI::detail
