// The host executor: one pass over an iteration, vectorised along the innermost (collapsed)
// dimension and split over the thread pool in contiguous parts.
#pragma once

#include <algorithm>

#include <dp/config.hpp>
#include <dp/core/counters.hpp>
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

template <bool Unit, class T, class Ev>
DP_FORCEINLINE void cpu_inner(T* __restrict__ o, index_t ostride, const Ev& ev, index_t b, index_t e) {
  if constexpr (Unit) {
    DP_IVDEP
    for (index_t i = b; i < e; ++i) {
      o[i] = static_cast<T>(ev.template at<true>(i));
    }
  } else {
    for (index_t i = b; i < e; ++i) {
      o[i * ostride] = static_cast<T>(ev.template at<false>(i));
    }
  }
}

template <bool Unit, class T, int N, class Ev>
void cpu_elementwise_impl(T* out, const iteration<N>& it, const Ev& ev) {
  const int r = it.rank;
  const index_t inner = it.ext[r - 1], rows = it.numel / inner;
  const index_t* ost = it.st[0];
  if (rows == 1) {
    parallel_for(inner, parallel_grain, [&](index_t b, index_t e) {
      Ev local = ev;
      index_t c[max_rank] = {};
      local.seek(c);
      cpu_inner<Unit>(out, ost[r - 1], local, b, e);
    });
    return;
  }
  parallel_for(rows, std::max<index_t>(1, parallel_grain / inner), [&](index_t rb, index_t re) {
    Ev local = ev;
    index_t c[max_rank] = {};
    unravel(rb, c, it.ext, r - 1);
    for (index_t row = rb; row < re; ++row) {
      local.seek(c);
      index_t off = 0;
      for (int d = 0; d + 1 < r; ++d) {
        off += c[d] * ost[d];
      }
      cpu_inner<Unit>(out + off, ost[r - 1], local, 0, inner);
      next_coord(c, it.ext, r - 1);
    }
  });
}

/// out[i] = ev(i) over the iteration (operand 0 is `out`).
template <class T, int N, class Ev>
void cpu_elementwise(T* out, const iteration<N>& it, const Ev& ev) {
  if (it.numel == 0) {
    return;
  }
  DP_COUNT(passes, 1);
  if (it.unit) {
    cpu_elementwise_impl<true>(out, it, ev);
  } else {
    cpu_elementwise_impl<false>(out, it, ev);
  }
}

}  // namespace dp::inline DP_ABI::detail
