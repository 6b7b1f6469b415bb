// The host executor: one pass over an iteration, vectorised along the innermost (collapsed)
// dimension and split over the thread pool in contiguous parts.
#pragma once

#include <algorithm>

#include <dp/config.hpp>
#include <dp/core/counters.hpp>
#include <dp/exec/dispatch.hpp>
#include <dp/exec/plan.hpp>
#include <dp/exec/thread_pool.hpp>
#include <dp/expr/node.hpp>

namespace dp::inline DP_ABI::detail {

/// Below this many elements a pass runs on the calling thread (waking workers costs more).
inline constexpr index_t parallel_grain = 32768;

/// Advances an odometer over the first `dims` extents.
DP_FORCEINLINE void next_coord(index_t* c, const index_t* ext, int dims) {
  for (int d = dims - 1; d >= 0; --d) {
    if (++c[d] < ext[d]) {
      return;
    }
    c[d] = 0;
  }
}
/// The coordinate of linear position `i` over the first `dims` extents.
DP_FORCEINLINE void unravel(index_t i, index_t* c, const index_t* ext, int dims) {
  for (int d = dims - 1; d >= 0; --d) {
    c[d] = i % ext[d];
    i /= ext[d];
  }
}

template <bool Unit, bool Acc, class T, class Ev>
DP_FORCEINLINE void cpu_inner(T* __restrict__ o, index_t ostride, const Ev& ev, index_t b, index_t e) {
  if constexpr (Unit) {
    DP_IVDEP
    for (index_t i = b; i < e; ++i) {
      const T v = static_cast<T>(ev.template at<true>(i));
      o[i] = Acc ? static_cast<T>(o[i] + v) : v;
    }
  } else {
    for (index_t i = b; i < e; ++i) {
      const T v = static_cast<T>(ev.template at<false>(i));
      o[i * ostride] = Acc ? static_cast<T>(o[i * ostride] + v) : v;
    }
  }
}

/// One loop shape for every iteration: the flat range is split into parts, and each part walks its
/// row segments (a single long row is split too). Keeping one shape keeps generated code small: this
/// loop is instantiated for every fused expression.
template <bool Unit, bool Acc, class T, int N, class Ev>
void cpu_elementwise_impl(T* out, const iteration<N>& it, const Ev& ev) {
  const int r = it.rank;
  const index_t inner = it.ext[r - 1];
  const index_t* ost = it.st[0];
  parallel_for(it.numel, parallel_grain, [&](index_t lo, index_t hi) {
    Ev local = ev;
    index_t c[max_rank] = {};
    unravel(lo / inner, c, it.ext, r - 1);
    index_t i = lo % inner, pos = lo;
    while (pos < hi) {
      const index_t e = std::min(inner, i + (hi - pos));
      local.seek(c);
      index_t off = 0;
      for (int d = 0; d + 1 < r; ++d) {
        off += c[d] * ost[d];
      }
      cpu_inner<Unit, Acc>(out + off, ost[r - 1], local, i, e);
      pos += e - i;
      i = 0;
      next_coord(c, it.ext, r - 1);
    }
  });
}

/// out[i] = ev(i) (or out[i] += ev(i) with Acc) over the iteration (operand 0 is `out`).
template <bool Acc = false, class T, int N, class Ev>
void elementwise(host_target, T* out, const iteration<N>& it, const Ev& ev) {
  if (it.numel == 0) {
    return;
  }
  DP_COUNT(passes, 1);
  if (it.unit) {
    cpu_elementwise_impl<true, Acc>(out, it, ev);
  } else {
    cpu_elementwise_impl<false, Acc>(out, it, ev);
  }
}

}  // namespace dp::inline DP_ABI::detail
