// nn::max_pool2d<K, Stride, Padding>: maximum over K x K windows of [N, C, H, W] (padding counts as
// -infinity (the lowest value for integers); the first maximum of a window wins, as in PyTorch). Forward remembers each
// window's winner; backward adds each window's gradient to its winner, one plane per caller (no atomics).
#pragma once

#include <algorithm>
#include <bit>
#include <cstdint>
#include <limits>
#include <memory>
#include <type_traits>

#include <dp/exec/for_each.hpp>
#include <dp/exec/reduce_ops.hpp>
#include <dp/nn/autograd/ops.hpp>
#include <dp/nn/layers/window.hpp>

namespace dp::inline DP_ABI::nn {
namespace detail {

/// `take ? a : b` without a branch on the host, where compilers turn a float select back into a
/// branch that mispredicts on data (the max of a pooling window).
template <class T>
DP_HOST_DEVICE DP_FORCEINLINE T select_bits(bool take, T a, T b) {
#if defined(__CUDA_ARCH__)
  return take ? a : b;
#else
  static_assert(sizeof(T) == 4 || sizeof(T) == 8);
  using U = std::conditional_t<sizeof(T) == 4, std::uint32_t, std::uint64_t>;
  const U m = U(0) - static_cast<U>(take);
  return std::bit_cast<T>(static_cast<U>((std::bit_cast<U>(a) & m) | (std::bit_cast<U>(b) & ~m)));
#endif
}

/// One output row (plane, oh) per call. PyTorch's rule: a window starts at its first valid element
/// with -inf; a larger value or a NaN replaces the current one. On the host, the outputs whose
/// windows lie inside the row ([in0, in1), found once per pass) go window element by window
/// element across the row (vectorised), or on a short row keep four maxima in registers: outputs
/// are independent, so no comparison waits on the one before (a loop over one window at a time
/// did, and branched on the data: 24% of a LeNet step).
template <class T>
struct maxpool_fwd {
  const T* x;
  T* y;
  std::int64_t* arg;  // index of the winner within the (n, c) plane
  window_geometry g;
  index_t in0, in1;

  static maxpool_fwd make(const T* x, T* y, std::int64_t* arg, const window_geometry& g) {
    // ow * s - p >= 0 and ow * s - p + k <= w.
    const index_t in0 = std::min(g.wo, (g.p + g.s - 1) / g.s);
    const index_t last = g.w - g.k + g.p < 0 ? -1 : (g.w - g.k + g.p) / g.s;
    return {x, y, arg, g, in0, std::max(in0, std::min(g.wo, last + 1))};
  }

  DP_HOST_DEVICE void operator()(index_t row) const {
    const index_t oh = row % g.ho, plane = row / g.ho;
    const T* __restrict__ xp = x + plane * g.h * g.w;
    // The window's rows inside the plane: [hs + kh0, hs + kh1).
    const index_t hs = oh * g.s - g.p;
    const index_t kh0 = hs < 0 ? -hs : 0, kh1 = g.h - hs < g.k ? g.h - hs : g.k;
    T* __restrict__ yr = y + row * g.wo;
    std::int64_t* __restrict__ ar = arg == nullptr ? nullptr : arg + row * g.wo;
#if defined(__CUDA_ARCH__)
    for (index_t ow = 0; ow < g.wo; ++ow) {  // a thread keeps its window's maximum in registers
      one(xp, yr, ar, ow, hs, kh0, kh1);
    }
#else
    for (index_t ow = 0; ow < in0; ++ow) {
      one(xp, yr, ar, ow, hs, kh0, kh1);
    }
    for (index_t ow = in1; ow < g.wo; ++ow) {
      one(xp, yr, ar, ow, hs, kh0, kh1);
    }
    if (g.s == 1) {
      interior<1>(xp, yr, ar, hs, kh0, kh1);
    } else if (g.s == 2) {
      interior<2>(xp, yr, ar, hs, kh0, kh1);
    } else {
      interior<0>(xp, yr, ar, hs, kh0, kh1);
    }
#endif
  }

 private:
  /// The outputs [in0, in1) at stride S (g.s where S is 0).
  template <index_t S>
  void interior(const T* __restrict__ xp, T* __restrict__ yr, std::int64_t* __restrict__ ar, index_t hs, index_t kh0,
                index_t kh1) const {
    const index_t stride = S == 0 ? g.s : S, width = g.w, p = g.p;
    if (in1 - in0 >= 8) {  // one pass per window element over the row: vectorised
      for (index_t ow = in0; ow < in1; ++ow) {
        yr[ow] = dp::detail::max_reduce::identity<T>();
        if (ar != nullptr) {
          ar[ow] = (hs + kh0) * width + ow * stride - p;
        }
      }
      for (index_t kh = kh0; kh < kh1; ++kh) {
        for (index_t kw = 0; kw < g.k; ++kw) {
          const index_t base = (hs + kh) * width - p + kw;  // + ow * stride: output ow's element
          for (index_t ow = in0; ow < in1; ++ow) {
            const index_t at = base + ow * stride;
            const T v = xp[at], cur = yr[ow];
            const bool take = (v > cur) | (v != v);
            yr[ow] = select_bits(take, v, cur);
            if (ar != nullptr) {
              ar[ow] = take ? at : ar[ow];
            }
          }
        }
      }
      return;
    }
    index_t ow = in0;  // a short row: its maxima in registers, four outputs at a time
    if (ow + 4 <= in1) {
      block<S, 4>(xp, yr, ar, ow, hs, kh0, kh1);
      ow += 4;
    }
    for (; ow < in1; ++ow) {
      one(xp, yr, ar, ow, hs, kh0, kh1);
    }
  }
  /// Outputs [ow0, ow0 + B), their windows inside the row: maxima and winners kept in registers.
  template <index_t S, index_t B>
  DP_FORCEINLINE void block(const T* __restrict__ xp, T* __restrict__ yr, std::int64_t* __restrict__ ar, index_t ow0,
                            index_t hs, index_t kh0, index_t kh1) const {
    const index_t stride = S == 0 ? g.s : S, width = g.w, p = g.p;
    T best[B];
    std::int64_t where[B];
    for (index_t j = 0; j < B; ++j) {
      best[j] = dp::detail::max_reduce::identity<T>();
      where[j] = (hs + kh0) * width + (ow0 + j) * stride - p;
    }
    for (index_t kh = kh0; kh < kh1; ++kh) {
      for (index_t kw = 0; kw < g.k; ++kw) {
        const index_t base = (hs + kh) * width - p + kw + ow0 * stride;
        for (index_t j = 0; j < B; ++j) {
          const T v = xp[base + j * stride];
          const bool take = (v > best[j]) | (v != v);
          best[j] = select_bits(take, v, best[j]);
          where[j] = take ? base + j * stride : where[j];
        }
      }
    }
    for (index_t j = 0; j < B; ++j) {
      yr[ow0 + j] = best[j];
    }
    if (ar != nullptr) {
      for (index_t j = 0; j < B; ++j) {
        ar[ow0 + j] = where[j];
      }
    }
  }
  /// Output ow alone, its window clipped to the row (the outputs at the padded edges).
  DP_HOST_DEVICE void one(const T* __restrict__ xp, T* __restrict__ yr, std::int64_t* __restrict__ ar, index_t ow,
                          index_t hs, index_t kh0, index_t kh1) const {
    const index_t ws = ow * g.s - g.p;
    const index_t kw0 = ws < 0 ? -ws : 0, kw1 = g.w - ws < g.k ? g.w - ws : g.k;
    T best = dp::detail::max_reduce::identity<T>();
    std::int64_t where = (hs + kh0) * g.w + ws + kw0;
    for (index_t kh = kh0; kh < kh1; ++kh) {
      const index_t at = (hs + kh) * g.w + ws;
      for (index_t kw = kw0; kw < kw1; ++kw) {
        const T v = xp[at + kw];
        const bool take = (v > best) | (v != v);
        best = select_bits(take, v, best);
        where = take ? at + kw : where;
      }
    }
    yr[ow] = best;
    if (ar != nullptr) {
      ar[ow] = where;
    }
  }
};

/// Windows that do not overlap (K <= S) without padding, on the host, one plane per call, a block of
/// output rows at a time: first each input column's maximum over the window's rows (contiguous
/// runs: vectorised), then each output's maximum over its window's K columns, the block's outputs as
/// one run (windows S apart tile the buffer in output order, where a short row alone fills no
/// vector). The maximum is separable; the rule's order (the first maximum in row-major order, the
/// last NaN) is kept by comparing the candidates' indices.
template <class T>
struct maxpool_planes {
  static constexpr index_t tile = 1024;  // buffered columns of a block
  const T* x;
  T* y;
  std::int64_t* arg;
  window_geometry g;

  static bool fits(const window_geometry& g) {
    return g.ho > 0 && g.wo > 0 && g.p == 0 && g.k <= g.s && g.wo * g.s <= tile &&
           g.h * g.w <= std::numeric_limits<std::int32_t>::max();
  }
  void operator()(index_t plane) const {
    if (g.s == 2) {
      run<2>(plane);
    } else {
      run<0>(plane);
    }
  }

 private:
  /// At stride S (g.s where S is 0).
  template <index_t S>
  void run(index_t plane) const {
    // An output row buffers `span` columns; it reads the first `cols` (a window's columns lie
    // inside the row, the gap after the last window does not).
    const index_t s = S == 0 ? g.s : S, k = g.k, w = g.w, span = g.wo * s, cols = std::min(span, w);
    const index_t rows = tile / span;
    const T* __restrict__ xp = x + plane * g.h * w;
    T val[tile];
    std::int32_t at[tile], win[tile];
    for (index_t oh0 = 0; oh0 < g.ho; oh0 += rows) {
      const index_t nr = std::min(rows, g.ho - oh0);
      for (index_t r = 0; r < nr; ++r) {  // columns: the rule in the window's row order
        const index_t top = (oh0 + r) * s;
        T* __restrict__ v = val + r * span;
        std::int32_t* __restrict__ a = at + r * span;
        for (index_t c = 0; c < cols; ++c) {
          v[c] = xp[top * w + c];
          a[c] = static_cast<std::int32_t>(top * w + c);
        }
        for (index_t kh = 1; kh < k; ++kh) {
          const T* __restrict__ in = xp + (top + kh) * w;
          const auto base = static_cast<std::int32_t>((top + kh) * w);
          for (index_t c = 0; c < cols; ++c) {
            const T e = in[c];
            const bool take = (e > v[c]) | (e != e);
            v[c] = select_bits(take, e, v[c]);
            a[c] = take ? base + static_cast<std::int32_t>(c) : a[c];
          }
        }
      }
      // Output o of the block reads buffer entries [o s, o s + k). Among its columns' winners, a
      // tie goes to the earlier row (the smaller index: columns come in ascending order), and a
      // NaN to the later row (or the later column of the same row).
      const index_t outs = nr * g.wo, first = (plane * g.ho + oh0) * g.wo;
      T* __restrict__ yo = y + first;
      for (index_t o = 0; o < outs; ++o) {
        yo[o] = val[o * s];
        win[o] = at[o * s];
      }
      for (index_t kw = 1; kw < k; ++kw) {
        for (index_t o = 0; o < outs; ++o) {
          const T e = val[o * s + kw], best = yo[o];
          const std::int32_t ie = at[o * s + kw], ib = win[o];
          const bool take = ((e != e) & ((best == best) | (ie > ib))) | (e > best) | ((e == best) & (ie < ib));
          yo[o] = select_bits(take, e, best);
          win[o] = take ? ie : ib;
        }
      }
      if (arg != nullptr) {
        for (index_t o = 0; o < outs; ++o) {
          arg[first + o] = win[o];
        }
      }
    }
  }
};

/// One (n, c) plane per call: each output's gradient goes to its window's winner, in output order
/// (one caller owns the plane, so overlapping windows need no atomics and the sums do not depend on
/// the thread count).
template <class T>
struct maxpool_bwd {
  const T* gy;
  const std::int64_t* arg;
  T* dx;
  window_geometry g;
  bool accumulate;
  DP_HOST_DEVICE void operator()(index_t plane) const {
    T* out = dx + plane * g.h * g.w;
    if (!accumulate) {
      for (index_t i = 0; i < g.h * g.w; ++i) {
        out[i] = T(0);
      }
    }
    const index_t o0 = plane * g.hw_out();
    for (index_t o = o0; o < o0 + g.hw_out(); ++o) {
      out[arg[o]] += gy[o];
    }
  }
};

/// y (and the winners, when arg is not null) of x: [N, C, H, W] -> [N, C, Ho, Wo].
template <class T>
void maxpool_forward(device d, const T* x, T* y, std::int64_t* arg, const window_geometry& g) {
  if (d.is_cpu() && maxpool_planes<T>::fits(g)) {  // a host-only kernel: no device dispatch
    DP_COUNT(passes, 1);
    dp::detail::for_each_index(dp::detail::host_target{}, g.n * g.c, maxpool_planes<T>{x, y, arg, g},
                               window_grain(g.hw_out() * g.k * g.k));
    return;
  }
  dp::detail::for_each_index(d, g.n * g.c * g.ho, maxpool_fwd<T>::make(x, y, arg, g), window_grain(g.wo * g.k * g.k));
}

template <class T>
struct maxpool_op final : op {
  int in, out;
  window_geometry geo{};
  tensor<std::int64_t> arg;
  grad_target<T> t;

  const char* name() const override { return "max_pool2d"; }
  void forward(graph& g) override {
    maxpool_forward(arg.device(), g.value<T>(in).data(), g.value<T>(out).data(), arg.data(), geo);
  }
  void plan(graph& g) override {
    if (g.receives_grad<T>(out)) {
      t = g.slot_target<T>(in);
    }
  }
  void backward(graph& g) override {
    if (t.active) {
      dp::detail::for_each_index(arg.device(), geo.n * geo.c,
                                 maxpool_bwd<T>{g.grad<T>(out).data(), arg.data(), t.t.data(), geo, !t.first},
                                 window_grain(geo.h * geo.w));
    }
  }
};

}  // namespace detail

template <index_t K, index_t Stride = K, index_t Padding = 0>
struct max_pool2d {
  static_assert(K > 0 && Stride > 0 && Padding >= 0 && 2 * Padding <= K,
                "dp: max_pool2d needs K, Stride > 0 and Padding at most K / 2");
  static constexpr bool preserves_channels = true;  // the last dimension is pooled
  static void dp_members(auto&, auto&&) {}

  template <class X>
  auto forward(const X& x) const {
    using T = typename decltype(detail::materialize(x))::value_type;
    // Its branch-free select works on 4- and 8-byte words.
    constexpr bool word = sizeof(T) == 4 || sizeof(T) == 8;
    static_assert(word,
                  "dp: max_pool2d pools elements of 4 or 8 bytes (float, double, int32, int64); convert the input "
                  "with dp::cast<float>(x)");
    if constexpr (word) {
      return forward_words(x);
    } else {
      return tensor<T>{};  // the static_assert above is the error, and the only one
    }
  }
  template <class X>
  auto operator()(const X& x) const {
    return forward(x);
  }

 private:
  template <class X>
  auto forward_words(const X& x) const {
    auto in = detail::materialize(x).contiguous();  // the window reads rows in order
    using T = typename decltype(in)::value_type;
    DP_CHECK(in.rank() == 4, shape_error, "dp: max_pool2d: the input has shape ", in.shape(),
             " but must be [N, C, H, W]");
    const auto g = detail::window_geometry::of(in.shape(), K, Stride, Padding);
    DP_CHECK(g.ho > 0 && g.wo > 0, shape_error, "dp: max_pool2d: a ", K, "x", K, " window does not fit shape ",
             in.shape());
    const dp::shape out_shape{g.n, g.c, g.ho, g.wo};
    if constexpr (detail::is_var<decltype(in)>::value) {
      detail::graph& gr = *in.graph();
      auto o = std::make_unique<detail::maxpool_op<T>>();
      o->in = in.slot();
      o->geo = g;
      o->arg = empty<std::int64_t>(out_shape, in.device());
      o->out = gr.add_slot<T>(empty<T>(out_shape, in.device()), detail::grad_flows(in));
      o->forward(gr);
      const int out = o->out;
      gr.record(std::move(o));
      return gr.make_var<T>(out);
    } else {
      tensor<T> y = empty<T>(out_shape, in.device());
      detail::maxpool_forward(in.device(), in.data(), y.data(), nullptr, g);
      return y;
    }
  }
};

}  // namespace dp::inline DP_ABI::nn
