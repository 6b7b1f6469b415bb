// nn::conv2d<In, Out, K, Stride, Padding>: 2-D convolution of [N, In, H, W] by im2col and GEMM
// (PyTorch's initialisation: U(-b, b) with b = 1/sqrt(In*K*K) for weight and bias). Backward: two
// GEMMs and col2im written as a gather (each input element sums the columns that read it), so no
// atomics are needed and the result does not depend on thread count.
#pragma once

#include <algorithm>
#include <cmath>
#include <memory>
#include <type_traits>

#include <dp/exec/for_each.hpp>
#include <dp/exec/matmul.hpp>
#include <dp/nn/autograd/ops.hpp>
#include <dp/nn/functional.hpp>
#include <dp/nn/layers/window.hpp>
#include <dp/nn/parameter.hpp>
#include <dp/nn/width.hpp>

namespace dp::inline DP_ABI::nn {
namespace detail {

/// One (n, c, kh, kw) block of the column matrix per call: Ho rows of Wo elements, each a copy of
/// an input row with stride S and zeros where the window hangs over the padding. Decoding the block
/// takes integer divisions, so it is done once per block, not per element or per row (it cost more
/// than the copies: 59% of a LeNet step when done per element).
template <class T>
struct im2col_fn {
  const T* x;
  T* col;  // [N, C*K*K, Ho*Wo]
  window_geometry g;
  DP_HOST_DEVICE void operator()(index_t block) const {
    const index_t r = block % g.ckk(), n = block / g.ckk();
    const index_t c = r / (g.k * g.k), kh = (r / g.k) % g.k, kw = r % g.k;
    // Outputs [lo, hi) of a row read inside the input row (ow * S - P + kw in [0, W)).
    const index_t first = g.p - kw, last = g.w - 1 + g.p - kw;
    const index_t lo = first <= 0 ? 0 : (first + g.s - 1) / g.s;
    const index_t hi = last < 0 ? 0 : (last / g.s + 1 < g.wo ? last / g.s + 1 : g.wo);
    // Zeros, the copy, zeros: plain loops that vectorise (bounds in one loop's body did not).
    const index_t wo = g.wo, s = g.s, shift = kw - g.p;
    T* __restrict__ out = col + block * g.hw_out();
    for (index_t oh = 0; oh < g.ho; ++oh, out += wo) {
      const index_t h = oh * s - g.p + kh;
      const bool inside = h >= 0 && h < g.h;
      const index_t a = inside && lo < wo ? lo : wo, b = inside && hi > a ? hi : a;
      const T* __restrict__ in = x + ((n * g.c + c) * g.h + (inside ? h : 0)) * g.w;
      for (index_t ow = 0; ow < a; ++ow) {
        out[ow] = T(0);
      }
      if (s == 1) {
        for (index_t ow = a; ow < b; ++ow) {
          out[ow] = in[ow + shift];
        }
      } else {
        for (index_t ow = a; ow < b; ++ow) {
          out[ow] = in[ow * s + shift];
        }
      }
      for (index_t ow = b; ow < wo; ++ow) {
        out[ow] = T(0);
      }
    }
  }
};

/// Each input element sums the columns that read it (a gather: no atomics, any thread count). One
/// input row (n, c, h) per call, so that its decoding's integer divisions are paid once per row.
template <class T>
struct col2im_fn {
  const T* dcol;
  T* dx;  // [N, C, H, W]
  window_geometry g;
  bool accumulate;
  DP_HOST_DEVICE void operator()(index_t row) const {
    const index_t h = row % g.h, c = (row / g.h) % g.c, n = row / (g.h * g.c);
    const T* block = dcol + (n * g.ckk() + c * g.k * g.k) * g.hw_out();  // column rows of channel c
    T* out = dx + row * g.w;
#if !defined(__CUDA_ARCH__)
    if (g.s == 1) {
      unit_stride(block, out, h);
      return;
    }
#endif
    const covering_outputs rows(h, g.k, g.s, g.p, g.ho);
    for (index_t w = 0; w < g.w; ++w) {
      const covering_outputs cols(w, g.k, g.s, g.p, g.wo);
      T acc = T(0);
      for (index_t oh = rows.hi - 1; oh >= rows.lo; --oh) {
        const index_t kh = h + g.p - oh * g.s;
        for (index_t ow = cols.hi - 1; ow >= cols.lo; --ow) {
          const index_t kw = w + g.p - ow * g.s;
          acc += block[(kh * g.k + kw) * g.hw_out() + oh * g.wo + ow];
        }
      }
      out[w] = accumulate ? out[w] + acc : acc;
    }
  }

 private:
  /// Stride 1 on the host: the same terms in the same order (kh ascending is oh descending, kw
  /// ascending is ow descending), added as whole row segments into a tile of sums (vectorised).
  void unit_stride(const T* block, T* out, index_t h) const {
    constexpr index_t tile = 256;
    T acc[tile];
    const index_t k = g.k, p = g.p, wo = g.wo, hw = g.hw_out();
    for (index_t w0 = 0; w0 < g.w; w0 += tile) {
      const index_t len = g.w - w0 < tile ? g.w - w0 : tile;
      for (index_t i = 0; i < len; ++i) {
        acc[i] = T(0);
      }
      for (index_t kh = 0; kh < k; ++kh) {
        const index_t oh = h + p - kh;
        if (oh < 0 || oh >= g.ho) {
          continue;
        }
        for (index_t kw = 0; kw < k; ++kw) {
          // Input w reads output ow = w + p - kw, inside [0, wo) for w in [kw - p, kw - p + wo).
          const index_t lo = std::max(w0, kw - p), hi = std::min(w0 + len, kw - p + wo);
          const T* __restrict__ src = block + (kh * k + kw) * hw + oh * wo;
          T* __restrict__ a = acc;
          for (index_t w = lo; w < hi; ++w) {
            a[w - w0] += src[w + p - kw];
          }
        }
      }
      for (index_t i = 0; i < len; ++i) {
        out[w0 + i] = accumulate ? out[w0 + i] + acc[i] : acc[i];
      }
    }
  }
};

template <class T>
void im2col(const tensor<T>& x, const tensor<T>& col, const window_geometry& g) {
  const index_t blocks = g.n * g.ckk(), grain = window_grain(g.hw_out());
  dp::detail::for_each_index(x.device(), blocks, im2col_fn<T>{x.data(), col.data(), g}, grain);
}

/// y[n, o, :] += b[o]: one (n, o) row of Ho*Wo elements per call.
template <class T>
struct add_bias_fn {
  T* y;
  const T* b;
  index_t channels, hw;
  DP_HOST_DEVICE void operator()(index_t row) const {
    const T v = b[row % channels];
    T* r = y + row * hw;
    for (index_t i = 0; i < hw; ++i) {
      r[i] += v;
    }
  }
};

/// db[o] (=, or += with accumulate) the sum of go[n, o, :] over n: one channel per call, summed in
/// a fixed order (in double for float, as dp's reductions do).
template <class T>
struct bias_grad_fn {
  const T* go;
  T* db;
  index_t batch, channels, hw;
  bool accumulate;
  DP_HOST_DEVICE void operator()(index_t o) const {
    using acc_t = std::conditional_t<std::is_same_v<T, float>, double, T>;
    // Eight partial sums (element i of a row into sum i % 8), added in a fixed order: they
    // vectorise, where one sum waited on each addition.
    constexpr index_t lanes = 8;
    acc_t part[lanes] = {};
    for (index_t n = 0; n < batch; ++n) {
      const T* r = go + (n * channels + o) * hw;
      index_t i = 0;
      for (; i + lanes <= hw; i += lanes) {
        for (index_t l = 0; l < lanes; ++l) {
          part[l] += r[i + l];
        }
      }
      for (; i < hw; ++i) {
        part[i % lanes] += r[i];
      }
    }
    acc_t s = 0;
    for (index_t l = 0; l < lanes; ++l) {
      s += part[l];
    }
    db[o] = accumulate ? static_cast<T>(db[o] + static_cast<T>(s)) : static_cast<T>(s);
  }
};

/// The traced convolution, bias included: the output slot holds W col + b, so what follows it
/// (relu, its backward) reads contiguous operands; with the bias added by a broadcast expression
/// instead, the fused relu backward ran off the vectorised path (26% of a LeNet step).
template <class T>
struct conv2d_op final : op {
  int in, out;                    // in: [N, C, H, W]; out: [N, O, Ho*Wo]
  tensor<T> weight, weight_grad;  // [O, C*K*K] views
  tensor<T> bias, bias_grad;      // [O], undefined without a bias
  window_geometry geo{};
  tensor<T> col, dcol;
  bool input_grad = false;  // the input takes a gradient (dcol is allocated): not a detached value
  grad_target<T> tx, tw, tb;

  const char* name() const override { return "conv2d"; }
  void forward(graph& g) override {
    im2col(g.value<T>(in), col, geo);
    const tensor<T>& y = g.value<T>(out);
    dp::detail::matmul_into(y, weight.unsqueeze(0), col);
    if (bias.defined()) {
      const index_t channels = weight.shape()[0];
      dp::detail::for_each_index(y.device(), geo.n * channels,
                                 add_bias_fn<T>{y.data(), bias.data(), channels, geo.hw_out()},
                                 window_grain(geo.hw_out()));
    }
  }
  void plan(graph& g) override {
    if (g.receives_grad<T>(out)) {
      tx = input_grad ? g.slot_target<T>(in) : grad_target<T>{};
      tw = g.param_target<T>(weight_grad);
      tb = g.param_target<T>(bias_grad);
    }
  }
  void backward(graph& g) override {
    const tensor<T>& go = g.grad<T>(out);  // [N, O, Ho*Wo]
    if (tb.active) {
      const index_t channels = weight.shape()[0];
      dp::detail::for_each_index(
          go.device(), channels,
          bias_grad_fn<T>{go.data(), tb.t.data(), geo.n, channels, geo.hw_out(), !tb.first || g.accumulate_params}, 1);
    }
    if (tw.active) {
      if (geo.n == 0) {  // no sample: no product writes the gradient (it kept the last step's)
        apply_zero_grad(g, tw);
      }
      for (index_t n = 0; n < geo.n; ++n) {
        const bool add = n > 0 || !tw.first || g.accumulate_params;
        dp::detail::matmul_into(tw.t, go[n], col[n].t(), T(1), add ? T(1) : T(0));
      }
    }
    if (tx.active) {
      dp::detail::matmul_into(dcol, weight.t().unsqueeze(0), go);
      dp::detail::for_each_index(dcol.device(), geo.n * geo.c * geo.h,
                                 col2im_fn<T>{dcol.data(), tx.t.data(), geo, !tx.first},
                                 window_grain(geo.w * geo.k * geo.k));
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
  static constexpr width_axis features_axis = width_axis::channel;
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
    // A traced input of another type has a slot among that type's values, which the op would read
    // among T's: another tensor's memory.
    constexpr bool same = std::is_same_v<typename decltype(detail::materialize(x))::value_type, T>;
    static_assert(same,
                  "dp: conv2d: the input's element type differs from the layer's (the operands have different element "
                  "types); convert the input with dp::cast<T>(x), or give the layer the input's type as its last "
                  "template argument");
    if constexpr (same) {
      return forward_same(x);
    } else {
      return tensor<T>{};  // the static_assert above is the error, and the only one
    }
  }

 private:
  template <class X>
  auto forward_same(const X& x) const {
    auto in = detail::materialize(x).contiguous();  // im2col reads rows in order
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
        if constexpr (Bias) {
          o->bias = bias.value();
          o->bias_grad = bias.grad();
        }
        o->geo = g;
        o->col = empty<T>({g.n, g.ckk(), g.hw_out()}, in.device());
        // The input's gradient goes through dcol: the first layer, or one after nn::detach, needs none.
        o->input_grad = detail::grad_flows(in);
        if (o->input_grad) {
          o->dcol = empty<T>({g.n, g.ckk(), g.hw_out()}, in.device());
        }
        o->out = gr.add_slot<T>(empty<T>({g.n, Out, g.hw_out()}, in.device()),
                                o->input_grad || weight.grad().defined() || (Bias && bias.grad().defined()));
        o->forward(gr);
        const int out = o->out;
        gr.record(std::move(o));
        return gr.make_var<T>(out);
      } else {
        detail::check_eager_parameter(weight);
        tensor<T> col = empty<T>({g.n, g.ckk(), g.hw_out()}, in.device());
        detail::im2col(in, col, g);
        tensor<T> out = empty<T>({g.n, Out, g.hw_out()}, in.device());
        dp::detail::matmul_into(out, w2.unsqueeze(0), col);
        return out;
      }
    }();
    auto y4 = y.reshape({g.n, Out, g.ho, g.wo});
    if constexpr (Bias && !detail::is_var<decltype(in)>::value) {
      return y4 + detail::param_view(bias, {Out, 1, 1});
    } else {
      return y4 * T(1);  // traced: the op added the bias
    }
  }

 public:
  template <class X>
  auto operator()(const X& x) const {
    return forward(x);
  }
};

}  // namespace dp::inline DP_ABI::nn
