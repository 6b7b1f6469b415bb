// nn::max_pool2d<K, Stride, Padding>: maximum over K x K windows of [N, C, H, W] (padding counts as
// -infinity; the first maximum of a window wins, as in PyTorch). Forward remembers each window's
// winner; backward adds each window's gradient to its winner, one plane per caller (no atomics).
#pragma once

#include <algorithm>
#include <cstdint>
#include <limits>
#include <memory>

#include <dp/exec/for_each.hpp>
#include <dp/nn/autograd/ops.hpp>
#include <dp/nn/layers/window.hpp>

namespace dp::inline DP_ABI::nn {
namespace detail {

/// One output row (plane, oh) per call: the decoding's integer divisions once per row, not per
/// element (they cost more than the window's comparisons).
template <class T>
struct maxpool_fwd {
  const T* x;
  T* y;
  std::int64_t* arg;  // index of the winner within the (n, c) plane
  window_geometry g;
  DP_HOST_DEVICE void operator()(index_t row) const {
    const index_t oh = row % g.ho, plane = row / g.ho;
    const T* xp = x + plane * g.h * g.w;
    const index_t h0 = oh * g.s - g.p < 0 ? 0 : oh * g.s - g.p;
    for (index_t ow = 0; ow < g.wo; ++ow) {
      // PyTorch's rule: start at the window's first valid element with -inf; a larger value or a
      // NaN replaces the current one.
      const index_t w0 = ow * g.s - g.p < 0 ? 0 : ow * g.s - g.p;
      T best = -std::numeric_limits<T>::infinity();
      std::int64_t where = h0 * g.w + w0;
      for (index_t kh = 0; kh < g.k; ++kh) {
        const index_t h = oh * g.s - g.p + kh;
        if (h < 0 || h >= g.h) {
          continue;
        }
        for (index_t kw = 0; kw < g.k; ++kw) {
          const index_t w = ow * g.s - g.p + kw;
          if (w < 0 || w >= g.w) {
            continue;
          }
          const T v = xp[h * g.w + w];
          if (v > best || v != v) {
            best = v;
            where = h * g.w + w;
          }
        }
      }
      y[row * g.wo + ow] = best;
      if (arg) {
        arg[row * g.wo + ow] = where;
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
  dp::detail::for_each_index(d, g.n * g.c * g.ho, maxpool_fwd<T>{x, y, arg, g}, window_grain(g.wo * g.k * g.k));
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
  static constexpr bool preserves_width = true;  // channels are unchanged
  static void dp_members(auto&, auto&&) {}

  template <class X>
  auto forward(const X& x) const {
    auto in = detail::materialize(x);
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
      o->out = gr.add_slot<T>(empty<T>(out_shape, in.device()), gr.requires_grad<T>(in.slot()));
      o->forward(gr);
      const int out = o->out;
      gr.record(std::move(o));
      return gr.make_var<T>(out);
    } else {
      const tensor<T> c = in.contiguous();
      tensor<T> y = empty<T>(out_shape, in.device());
      detail::maxpool_forward(in.device(), c.data(), y.data(), nullptr, g);
      return y;
    }
  }
  template <class X>
  auto operator()(const X& x) const {
    return forward(x);
  }
};

}  // namespace dp::inline DP_ABI::nn
