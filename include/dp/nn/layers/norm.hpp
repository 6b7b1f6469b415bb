// Normalisation layers, written with dp's own reductions and expressions so their backward is
// derived like any other forward code.
//   layer_norm<N>: over the last dimension, weight and bias of N (PyTorch's LayerNorm(N)).
//   batch_norm<C>: per channel (dimension 1) over the batch and any spatial dimensions (BatchNorm1d/2d);
//                  in training it normalises with the batch statistics and updates the running ones
//                  (buffers, kept in sync across replicas as their mean); in evaluation it uses them.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>

#include <dp/exec/reduce.hpp>
#include <dp/expr/operators.hpp>
#include <dp/nn/autograd/ops.hpp>
#include <dp/nn/functional.hpp>
#include <dp/nn/mode.hpp>
#include <dp/nn/parameter.hpp>
#include <dp/nn/width.hpp>

namespace dp::inline DP_ABI::nn {
namespace detail {
/// eps keeps 1/sqrt(var + eps) finite where a row or channel is constant (var = 0): it must be finite
/// and positive. PyTorch takes any value, but 0 or less turns a constant input into a silent NaN.
/// A subnormal eps is 0 too: host loops flush subnormals (exec/fp_env.hpp), as Adam's eps check says.
/// Checked at each forward, as settings may be edited between steps.
template <class T>
void check_norm_eps(const char* layer, index_t n, T eps) {
  DP_CHECK(std::isfinite(eps) && eps >= std::numeric_limits<T>::min(), value_error, "dp: ", layer, "<", n,
           ">: eps must be finite and > 0 (it keeps 1/sqrt(var + eps) finite), and a normal number of the layer's "
           "type (a subnormal one is flushed to 0), got ",
           eps);
}
}  // namespace detail

template <index_t N, class T = float>
struct layer_norm {
  static_assert(N > 0, "dp: layer_norm<N> needs N > 0");
  static constexpr index_t in_features = N;
  static constexpr index_t out_features = N;
  T eps = T(1e-5);
  parameter<T> weight{dp::ones<T>({N})};
  parameter<T> bias{dp::zeros<T>({N})};

  static void dp_members(auto& self, auto&& f) {
    f("weight", self.weight);
    f("bias", self.bias);
  }
  static void dp_settings(auto& self, auto&& f) { f("eps", self.eps); }

  template <class X>
  auto forward(const X& x) const {
    detail::check_norm_eps("layer_norm", N, eps);
    auto in = detail::materialize(x);
    DP_CHECK(in.rank() >= 1 && in.shape()[in.rank() - 1] == N, shape_error, "dp: layer_norm<", N,
             ">: the input has shape ", in.shape(), " but its last dimension must be ", N);
    auto mu = dp::mean(in, -1, true);
    auto var = dp::mean(dp::square(in - mu), -1, true);
    return (in - mu) * dp::rsqrt(var + eps) * weight + bias;
  }
  template <class X>
  auto operator()(const X& x) const {
    return forward(x);
  }
};

template <index_t C, class T = float>
struct batch_norm {
  static_assert(C > 0, "dp: batch_norm<C> needs C > 0");
  static constexpr index_t in_features = C;
  static constexpr index_t out_features = C;
  static constexpr width_axis features_axis = width_axis::either;  // channels: the last dimension of [N, C]
  T eps = T(1e-5);
  T momentum = T(0.1);
  parameter<T> weight{dp::ones<T>({C})};
  parameter<T> bias{dp::zeros<T>({C})};
  buffer<T> running_mean{dp::zeros<T>({C})};
  buffer<T> running_var{dp::ones<T>({C})};
  buffer<std::int64_t> num_batches_tracked{dp::zeros<std::int64_t>({}), buffer_sync::first};

  static void dp_members(auto& self, auto&& f) {
    f("weight", self.weight);
    f("bias", self.bias);
    f("running_mean", self.running_mean);
    f("running_var", self.running_var);
    f("num_batches_tracked", self.num_batches_tracked);
  }
  static void dp_settings(auto& self, auto&& f) {
    f("eps", self.eps);
    f("momentum", self.momentum);
  }

  template <class X>
  auto forward(const X& x) const {
    detail::check_norm_eps("batch_norm", C, eps);
    DP_CHECK(momentum >= T(0) && momentum <= T(1), value_error, "dp: batch_norm<", C,
             ">: momentum must lie in [0, 1] (the weight of each batch in the running statistics), got ", momentum);
    auto in = detail::materialize(x);
    const int r = in.rank();
    DP_CHECK(r >= 2 && in.shape()[1] == C, shape_error, "dp: batch_norm<", C, ">: the input has shape ", in.shape(),
             " but needs at least 2 dimensions with ", C, " channels in dimension 1");
    dp::shape bshape = dp::shape::filled(r, 1);
    bshape[1] = C;
    int axes_buf[max_rank];
    int na = 0;
    for (int d = 0; d < r; ++d) {
      if (d != 1) {
        axes_buf[na++] = d;
      }
    }
    const std::span<const int> axes(axes_buf, static_cast<std::size_t>(na));
    auto stats = [&] {
      if (training()) {
        const index_t n = in.numel() / C;
        DP_CHECK(n != 1, value_error, "dp: batch_norm<", C,
                 ">: training needs more than one value per channel, got shape ", in.shape());
        auto mu = dp::mean(in, axes, true);
        auto var = dp::mean(dp::square(in - mu), axes, true);
        // No rows (a rank whose share of the batch is empty): an empty output and the running
        // statistics as they were, as in PyTorch; dp::parallel weights this share 0 when it syncs.
        // The batch is counted either way, as PyTorch's forward counts it before it normalises.
        if (n > 0) {
          const T m = momentum, unbias = T(n) / T(n - 1);
          nn::update(running_mean, (T(1) - m) * running_mean + m * nn::detach(mu).reshape({C}));
          nn::update(running_var, (T(1) - m) * running_var + (m * unbias) * nn::detach(var).reshape({C}));
        }
        nn::update(num_batches_tracked, num_batches_tracked + std::int64_t{1});
        return std::pair{mu, var};
      }
      // Evaluation: the running statistics, as constants of the same kind as the input.
      return std::pair{detail::constant_like(in, detail::buffer_view(running_mean, bshape)),
                       detail::constant_like(in, detail::buffer_view(running_var, bshape))};
    };
    auto [mu, var] = stats();
    return (in - mu) * dp::rsqrt(var + eps) * detail::param_view(weight, bshape) + detail::param_view(bias, bshape);
  }
  template <class X>
  auto operator()(const X& x) const {
    return forward(x);
  }
};

}  // namespace dp::inline DP_ABI::nn
