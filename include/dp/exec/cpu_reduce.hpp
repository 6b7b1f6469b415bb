// The host reduction driver. An iteration over the input marks reduced dimensions by a zero stride
// of operand 0 (the output). Two loop shapes cover every case: when the innermost dimension is
// reduced, each output is a vectorised horizontal reduction over rows; when it is kept, rows are
// accumulated into a block of outputs. Work is split over outputs, or over fixed blocks of the input
// when everything is reduced; either way the order of additions depends only on the shape, never on
// the thread count.
#pragma once

#include <algorithm>

#include <dp/config.hpp>
#include <dp/core/counters.hpp>
#include <dp/core/shape.hpp>
#include <dp/exec/cpu.hpp>
#include <dp/exec/fp_env.hpp>
#include <dp/exec/plan.hpp>
#include <dp/exec/reduce_ops.hpp>
#include <dp/exec/thread_pool.hpp>
#include <dp/expr/node.hpp>

namespace dp::inline DP_ABI::detail {

inline constexpr int reduce_lanes = 16;

/// Writes a reduced value, or adds it to what is there (gradients accumulate into their buffers).
template <class T, class A>
DP_FORCEINLINE void reduce_store(T* p, A v, bool accumulate) {
  *p = accumulate ? static_cast<T>(static_cast<A>(*p) + v) : static_cast<T>(v);
}

/// Reduces elements [b, e) of the current row of `ev` into `acc` (lane-parallel, fixed order).
/// Deliberately not forced inline: its callers share one copy per expression (compile time).
template <class Op, bool Unit, class A, class Ev>
A reduce_row(const Ev& ev, index_t b, index_t e, A acc) {
  A lanes[reduce_lanes];
  for (int l = 0; l < reduce_lanes; ++l) {
    lanes[l] = Op::template identity<A>();
  }
  index_t i = b;
  for (; i + reduce_lanes <= e; i += reduce_lanes) {
    for (int l = 0; l < reduce_lanes; ++l) {
      lanes[l] = Op::combine(lanes[l], static_cast<A>(ev.template at<Unit>(i + l)));
    }
  }
  for (; i < e; ++i) {
    acc = Op::combine(acc, static_cast<A>(ev.template at<Unit>(i)));
  }
  for (int w = reduce_lanes / 2; w > 0; w /= 2) {
    for (int l = 0; l < w; ++l) {
      lanes[l] = Op::combine(lanes[l], lanes[l + w]);
    }
  }
  return Op::combine(acc, lanes[0]);
}

template <class Op, class A, class T, int N, class Ev>
void cpu_reduce_all(T* out, const iteration<N>& it, const Ev& ev, A scale, bool apply_scale, bool accumulate) {
  // Fixed blocks (their size depends only on numel), partial results combined in block order.
  constexpr index_t max_blocks = 1024;
  const index_t block = std::max<index_t>(16384, ceil_div(it.numel, max_blocks));
  const index_t blocks = ceil_div(it.numel, block);
  A partial[max_blocks];
  auto run = [&]<bool Unit>() {
    parallel_for(blocks, 1, [&](index_t bb, index_t be) {
      Ev local = ev;
      for (index_t b = bb; b < be; ++b) {
        A acc = Op::template identity<A>();
        for_row_segments(it, b * block, std::min(it.numel, (b + 1) * block),
                         [&](const index_t* c, index_t ib, index_t ie) {
                           local.seek(c);
                           acc = reduce_row<Op, Unit>(local, ib, ie, acc);
                         });
        partial[b] = acc;
      }
    });
  };
  if (it.leaves_unit) {
    run.template operator()<true>();
  } else {
    run.template operator()<false>();
  }
  A acc = Op::template identity<A>();
  for (index_t b = 0; b < blocks; ++b) {
    acc = Op::combine(acc, partial[b]);
  }
  reduce_store(out, apply_scale ? acc * scale : acc, accumulate);
}

/// out (strides it.st[0], zero on reduced dimensions) = reduction of ev over the reduced dimensions.
/// The input is not empty (callers fill the identity for empty inputs).
template <class Op, class A, class T, int N, class Ev>
void reduce_into(host_target, T* out, const iteration<N>& it, const Ev& ev, A scale, bool apply_scale,
                 bool accumulate) {
  DP_COUNT(passes, 1);
  const host_fp_scope fp;  // the final combine and scale on this thread too, not only the parts
  const int r = it.rank;
  const index_t* ost = it.st[0];
  bool reduced[max_rank];
  int kept_dims[max_rank], reduced_dims[max_rank], nk = 0, nr = 0;
  index_t outputs = 1;
  for (int d = 0; d < r; ++d) {
    reduced[d] = ost[d] == 0 && it.ext[d] > 1;
    if (reduced[d]) {
      reduced_dims[nr++] = d;
    } else {
      kept_dims[nk++] = d;
      outputs *= it.ext[d];
    }
  }
  if (nr == 0 || outputs == 1) {
    if (nr == 0) {  // nothing reduced: a copy (with scale)
      parallel_for(it.numel, parallel_grain, [&](index_t lo, index_t hi) {
        Ev local = ev;
        for_row_segments(it, lo, hi, [&](const index_t* c, index_t ib, index_t ie) {
          local.seek(c);
          const index_t off = row_offset(c, ost, r);
          for (index_t i = ib; i < ie; ++i) {
            const A v = static_cast<A>(local.template at<false>(i));
            reduce_store(out + off + i * ost[r - 1], apply_scale ? v * scale : v, accumulate);
          }
        });
      });
      return;
    }
    cpu_reduce_all<Op>(out, it, ev, scale, apply_scale, accumulate);
    return;
  }
  const index_t inner = it.ext[r - 1];
  index_t red_count = 1;
  for (int k = 0; k < nr; ++k) {
    red_count *= it.ext[reduced_dims[k]];
  }
  if (reduced[r - 1]) {
    // Each output: the rows of its reduced sub-space, horizontally reduced.
    const index_t rows_per_out = red_count / inner;
    auto run = [&]<bool Unit>() {
      parallel_for(outputs, std::max<index_t>(1, parallel_grain / red_count), [&](index_t ob, index_t oe) {
        Ev local = ev;
        index_t c[max_rank] = {};
        for (index_t o = ob; o < oe; ++o) {
          index_t oc = o, off = 0;
          for (int k = nk - 1; k >= 0; --k) {
            c[kept_dims[k]] = oc % it.ext[kept_dims[k]];
            oc /= it.ext[kept_dims[k]];
            off += c[kept_dims[k]] * ost[kept_dims[k]];
          }
          A acc = Op::template identity<A>();
          for (int k = 0; k < nr - 1; ++k) {
            c[reduced_dims[k]] = 0;
          }
          for (index_t row = 0; row < rows_per_out; ++row) {
            local.seek(c);
            acc = reduce_row<Op, Unit>(local, 0, inner, acc);
            for (int k = nr - 2; k >= 0; --k) {  // odometer over the outer reduced dimensions
              if (++c[reduced_dims[k]] < it.ext[reduced_dims[k]]) {
                break;
              }
              c[reduced_dims[k]] = 0;
            }
          }
          reduce_store(out + off, apply_scale ? acc * scale : acc, accumulate);
        }
      });
    };
    if (it.leaves_unit) {
      run.template operator()<true>();
    } else {
      run.template operator()<false>();
    }
    return;
  }
  // Innermost kept: accumulate rows into a block of outputs along the innermost dimension.
  constexpr index_t chunk = 256;
  const index_t chunks = ceil_div(inner, chunk), outer_outputs = outputs / inner;
  auto run = [&]<bool Unit>() {
    parallel_for(outer_outputs * chunks, std::max<index_t>(1, parallel_grain / chunk / red_count),
                 [&](index_t tb, index_t te) {
                   Ev local = ev;
                   index_t c[max_rank] = {};
                   A acc[chunk];
                   for (index_t t = tb; t < te; ++t) {
                     const index_t ib = (t % chunks) * chunk, ie = std::min(inner, ib + chunk);
                     index_t oc = t / chunks, off = 0;
                     for (int k = nk - 2; k >= 0; --k) {  // kept dimensions except the innermost
                       c[kept_dims[k]] = oc % it.ext[kept_dims[k]];
                       oc /= it.ext[kept_dims[k]];
                       off += c[kept_dims[k]] * ost[kept_dims[k]];
                     }
                     for (index_t i = 0; i < ie - ib; ++i) {
                       acc[i] = Op::template identity<A>();
                     }
                     for (int k = 0; k < nr; ++k) {
                       c[reduced_dims[k]] = 0;
                     }
                     for (index_t row = 0; row < red_count; ++row) {
                       local.seek(c);
                       DP_IVDEP
                       for (index_t i = ib; i < ie; ++i) {
                         acc[i - ib] = Op::combine(acc[i - ib], static_cast<A>(local.template at<Unit>(i)));
                       }
                       for (int k = nr - 1; k >= 0; --k) {
                         if (++c[reduced_dims[k]] < it.ext[reduced_dims[k]]) {
                           break;
                         }
                         c[reduced_dims[k]] = 0;
                       }
                     }
                     const index_t ostep = ost[r - 1];
                     for (index_t i = ib; i < ie; ++i) {
                       reduce_store(out + off + i * ostep, apply_scale ? acc[i - ib] * scale : acc[i - ib], accumulate);
                     }
                   }
                 });
  };
  if (it.leaves_unit) {
    run.template operator()<true>();
  } else {
    run.template operator()<false>();
  }
}

}  // namespace dp::inline DP_ABI::detail
