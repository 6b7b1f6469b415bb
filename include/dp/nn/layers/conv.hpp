// nn::conv2d<In, Out, K, Stride, Padding>: 2-D convolution of [N, In, H, W] by im2col and GEMM
// (PyTorch's initialisation: U(-b, b) with b = 1/sqrt(In*K*K) for weight and bias). Backward: two
// GEMMs and col2im written as a gather (each input element sums the columns that read it), so no
// atomics are needed and the result does not depend on thread count.
#pragma once

#include <algorithm>
#include <cmath>
#include <memory>

#include <dp/exec/for_each.hpp>
#include <dp/exec/matmul.hpp>
#include <dp/nn/autograd/ops.hpp>
#include <dp/nn/functional.hpp>
#include <dp/nn/layers/window.hpp>
#include <dp/nn/parameter.hpp>

namespace dp::inline DP_ABI::nn {
namespace detail {

/// One row of the column matrix per call: (n, c, kh, kw, oh) decoded once, then Wo elements (a copy
/// with stride S, zeros where the window hangs over the padding). Per element the decoding's six
/// integer divisions cost more than the copy: 59% of a LeNet step before.
template <class T>
struct im2col_fn {
  const T* x;
  T* col;  // [N, C*K*K, Ho*Wo]: row (n, r, oh) holds Wo elements
  window_geometry g;
  DP_HOST_DEVICE void operator()(index_t row) const {
    const index_t oh = row % g.ho, r = (row / g.ho) % g.ckk(), n = row / (g.ho * g.ckk());
    const index_t c = r / (g.k * g.k), kh = (r / g.k) % g.k, kw = r % g.k;
    const index_t h = oh * g.s - g.p + kh;
    T* out = col + row * g.wo;
    if (h < 0 || h >= g.h) {
      for (index_t ow = 0; ow < g.wo; ++ow) {
        out[ow] = T(0);
      }
      return;
    }
    const T* in = x + ((n * g.c + c) * g.h + h) * g.w;
    for (index_t ow = 0; ow < g.wo; ++ow) {
      const index_t w = ow * g.s - g.p + kw;
      out[ow] = (w >= 0 && w < g.w) ? in[w] : T(0);
    }
  }
};

/// Each input element sums the columns that read it (a gather: no atomics, any thread count).
template <class T>
struct col2im_fn {
  const T* dcol;
  T* dx;  // [N, C, H, W]
  window_geometry g;
  bool accumulate;
  DP_HOST_DEVICE void operator()(index_t e) const {
    const index_t w = e % g.w, h = (e / g.w) % g.h, c = (e / (g.w * g.h)) % g.c, n = e / (g.w * g.h * g.c);
    const covering_outputs rows(h, g.k, g.s, g.p, g.ho), cols(w, g.k, g.s, g.p, g.wo);
    T acc = T(0);
    for (index_t oh = rows.hi - 1; oh >= rows.lo; --oh) {
      const index_t kh = h + g.p - oh * g.s;
      for (index_t ow = cols.hi - 1; ow >= cols.lo; --ow) {
        const index_t r = (c * g.k + kh) * g.k + (w + g.p - ow * g.s);
        acc += dcol[(n * g.ckk() + r) * g.hw_out() + oh * g.wo + ow];
      }
    }
    dx[e] = accumulate ? dx[e] + acc : acc;
  }
};

template <class T>
void im2col(const tensor<T>& x, const tensor<T>& col, const window_geometry& g) {
  const index_t rows = g.n * g.ckk() * g.ho,
                grain = std::max<index_t>(1, dp::detail::parallel_grain / std::max<index_t>(g.wo, 1));
  dp::detail::for_each_index(x.device(), rows, im2col_fn<T>{x.data(), col.data(), g}, grain);
}

template <class T>
struct conv2d_op final : op {
  int in, out;                    // in: [N, C, H, W]; out: [N, O, Ho*Wo]
  tensor<T> weight, weight_grad;  // [O, C*K*K] views
  window_geometry geo{};
  tensor<T> col, dcol;
  grad_target<T> tx, tw;

  const char* name() const override { return "conv2d"; }
  void forward(graph& g) override {
    im2col(g.value<T>(in), col, geo);
    dp::detail::matmul_into(g.value<T>(out), weight.unsqueeze(0), col);
  }
  void plan(graph& g) override {
    if (g.receives_grad<T>(out)) {
      tx = g.slot_target<T>(in);
      tw = g.param_target<T>(weight_grad);
    }
  }
  void backward(graph& g) override {
    const tensor<T>& go = g.grad<T>(out);  // [N, O, Ho*Wo]
    if (tw.active) {
      for (index_t n = 0; n < geo.n; ++n) {
        const bool add = n > 0 || !tw.first || g.accumulate_params;
        dp::detail::matmul_into(tw.t, go[n], col[n].t(), T(1), add ? T(1) : T(0));
      }
    }
    if (tx.active) {
      dp::detail::matmul_into(dcol, weight.t().unsqueeze(0), go);
      dp::detail::for_each_index(dcol.device(), g.value<T>(in).numel(),
                                 col2im_fn<T>{dcol.data(), tx.t.data(), geo, !tx.first});
    }
  }
};

}  // namespace detail

template <index_t In, index_t Out, index_t K, index_t Stride = 1, index_t Padding = 0, class T = float,
          bool Bias = true>
struct conv2d {
  static_assert(In > 0 && Out > 0 && K > 0 && Stride > 0 && Padding >= 0, "dp: conv2d needs positive sizes");
  static constexpr index_t in_features = In;  // channels, for nn::sequential's width check
  static constexpr index_t out_features = Out;
  using value_type = T;

  parameter<T> weight{init::uniform<T>({Out, In, K, K}, T(1) / std::sqrt(T(In * K * K)))};
  parameter<T> bias{Bias ? init::uniform<T>({Out}, T(1) / std::sqrt(T(In * K * K))) : tensor<T>{}};

  static void dp_members(auto& self, auto&& f) {
    f("weight", self.weight);
    if constexpr (Bias) {
      f("bias", self.bias);
    }
  }

  template <class X>
  auto forward(const X& x) const {
    auto in = detail::materialize(x);
    DP_CHECK(in.rank() == 4 && in.shape()[1] == In, shape_error, "dp: conv2d<", In, ", ", Out, ", ", K,
             ">: the input has shape ", in.shape(), " but must be [N, ", In, ", H, W]");
    const auto g = detail::window_geometry::of(in.shape(), K, Stride, Padding);
    DP_CHECK(g.ho > 0 && g.wo > 0, shape_error, "dp: conv2d: a ", K, "x", K, " kernel does not fit the input of shape ",
             in.shape(), " with padding ", Padding);
    const tensor<T> w2 = weight.value().reshape({Out, In * K * K});
    auto y = [&] {
      if constexpr (detail::is_var<decltype(in)>::value) {
        detail::graph& gr = *in.graph();
        auto o = std::make_unique<detail::conv2d_op<T>>();
        o->in = in.slot();
        o->weight = w2;
        o->weight_grad = weight.grad().defined() ? weight.grad().reshape({Out, In * K * K}) : tensor<T>{};
        o->geo = g;
        o->col = empty<T>({g.n, g.ckk(), g.hw_out()}, in.device());
        o->dcol = empty<T>({g.n, g.ckk(), g.hw_out()}, in.device());
        o->out = gr.add_slot<T>(empty<T>({g.n, Out, g.hw_out()}, in.device()),
                                gr.requires_grad<T>(in.slot()) || weight.grad().defined());
        o->forward(gr);
        const int out = o->out;
        gr.record(std::move(o));
        return gr.make_var<T>(out);
      } else {
        tensor<T> col = empty<T>({g.n, g.ckk(), g.hw_out()}, in.device());
        detail::im2col(in.contiguous(), col, g);
        tensor<T> out = empty<T>({g.n, Out, g.hw_out()}, in.device());
        dp::detail::matmul_into(out, w2.unsqueeze(0), col);
        return out;
      }
    }();
    auto y4 = y.reshape({g.n, Out, g.ho, g.wo});
    if constexpr (Bias) {
      return y4 + detail::param_view(bias, {Out, 1, 1});
    } else {
      return y4 * T(1);
    }
  }
  template <class X>
  auto operator()(const X& x) const {
    return forward(x);
  }
};

}  // namespace dp::inline DP_ABI::nn
