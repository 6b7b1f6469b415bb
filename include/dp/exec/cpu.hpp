// The host executor: one pass over an iteration, vectorised along the innermost (collapsed)
// dimension and split over the thread pool in contiguous parts.
#pragma once

#include <algorithm>
#include <type_traits>

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

/// Calls fn(coord, i_begin, i_end) for each row segment of linear range [lo, hi) of an iteration.
template <int N, class Fn>
void for_row_segments(const iteration<N>& it, index_t lo, index_t hi, Fn&& fn) {
  const int r = it.rank;
  const index_t inner = it.ext[r - 1];
  index_t c[max_rank] = {};
  unravel(lo / inner, c, it.ext, r - 1);
  index_t i = lo % inner, pos = lo;
  while (pos < hi) {
    const index_t e = std::min(inner, i + (hi - pos));
    fn(c, i, e);
    pos += e - i;
    i = 0;
    next_coord(c, it.ext, r - 1);
  }
}

/// The offset of the row at `c` (its outer coordinates) in an operand of strides `st`.
DP_FORCEINLINE index_t row_offset(const index_t* c, const index_t* st, int rank) {
  index_t off = 0;
  for (int d = 0; d + 1 < rank; ++d) {
    off += c[d] * st[d];
  }
  return off;
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
  const index_t* ost = it.st[0];
  parallel_for(it.numel, parallel_grain, [&](index_t lo, index_t hi) {
    Ev local = ev;
    for_row_segments(it, lo, hi, [&](const index_t* c, index_t i, index_t e) {
      local.seek(c);
      cpu_inner<Unit, Acc>(out + row_offset(c, ost, r), ost[r - 1], local, i, e);
    });
  });
}

/// How many copies of a broadcast value a row segment reads (the stack holds this many per leaf).
inline constexpr index_t broadcast_segment = 128;

/// Whether a pass that is not unit-stride is one whose leaves read along the row either with stride 1
/// or not at all (a value broadcast along it: x - x.max(-1, true), x * a 0-d tensor), into a
/// contiguous output: such rows run the vectorised loop with each broadcast value read from copies.
template <int N, class Ev>
bool broadcast_rows(const iteration<N>& it, const Ev& ev) {
  if (it.st[0][it.rank - 1] != 1) {
    return false;
  }
  bool fillable = true;  // a generator is not filled: it stays on the strided loop
  Ev probe = ev;
  probe.for_each_leaf([&](auto& leaf) {
    fillable =
        fillable && (leaf.inner == 1 || (leaf.inner == 0 && is_load_eval_v<std::remove_cvref_t<decltype(leaf)>>));
  });
  return fillable;
}

/// The rows of a broadcast_rows pass: every leaf broadcast along the row reads copies of its value
/// on this thread's stack (refilled when the row's value changes), segment by segment, so the loop is
/// the unit-stride one. Leaves are told apart by their visiting order, the same for every copy of `ev`.
template <bool Acc, class T, int N, class Ev>
void broadcast_rows_impl(T* out, const iteration<N>& it, const Ev& ev) {
  const int r = it.rank;
  const index_t inner = it.ext[r - 1], width = std::min(inner, broadcast_segment);
  const index_t* ost = it.st[0];
  parallel_for(it.numel, parallel_grain, [&](index_t lo, index_t hi) {
    Ev local = ev;
    alignas(64) unsigned char scratch[(N - 1) * broadcast_segment * 8];
    const void* filled[N - 1] = {};  // the element each leaf's copies hold (null: none yet)
    auto copies = [&](int k) { return scratch + k * broadcast_segment * 8; };
    for_row_segments(it, lo, hi, [&](const index_t* c, index_t i, index_t e) {
      local.seek(c);
      int k = 0;
      local.for_each_leaf([&](auto& leaf) {
        using L = std::remove_cvref_t<decltype(leaf)>;
        if constexpr (is_load_eval_v<L>) {
          if (leaf.inner == 0) {
            using V = std::remove_cvref_t<decltype(*leaf.row)>;
            static_assert(sizeof(V) <= 8, "dp: a leaf's element is at most 8 bytes");
            if (filled[k] != leaf.row) {
              std::fill_n(reinterpret_cast<V*>(copies(k)), width, *leaf.row);
              filled[k] = leaf.row;
            }
          }
        }
        ++k;
      });
      const index_t off = row_offset(c, ost, r);
      for (index_t s = i; s < e; s += width) {
        Ev seg = local;  // positioned on element s: a broadcast leaf reads its copies from their start
        k = 0;
        seg.for_each_leaf([&](auto& leaf) {
          using L = std::remove_cvref_t<decltype(leaf)>;
          if constexpr (is_load_eval_v<L>) {
            using V = std::remove_cvref_t<decltype(*leaf.row)>;
            leaf.row = leaf.inner == 0 ? reinterpret_cast<const V*>(copies(k)) : leaf.row + s;
          } else {
            leaf.row += s;
          }
          ++k;
        });
        cpu_inner<true, Acc>(out + off + s, 1, seg, 0, std::min(width, e - s));
      }
    });
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
  } else if (broadcast_rows(it, ev)) {
    DP_COUNT(broadcast_row_passes, 1);
    broadcast_rows_impl<Acc>(out, it, ev);
  } else {
    cpu_elementwise_impl<false, Acc>(out, it, ev);
  }
}

}  // namespace dp::inline DP_ABI::detail
