// nn::linear<In, Out>: y = x W^T + b, with PyTorch's initialisation (U(-1/sqrt(In), 1/sqrt(In)) for
// both). The bias is added lazily, so a following activation fuses with it.
#pragma once

#include <cmath>

#include <dp/exec/matmul.hpp>
#include <dp/nn/autograd/ops.hpp>
#include <dp/nn/parameter.hpp>

namespace dp::inline DP_ABI::nn {

template <index_t In, index_t Out, class T = float, bool Bias = true>
struct linear {
  static_assert(In > 0 && Out > 0, "dp: linear<In, Out> needs positive widths");
  static constexpr index_t in_features = In;
  static constexpr index_t out_features = Out;
  using value_type = T;

  parameter<T> weight{init::uniform<T>({Out, In}, T(1) / std::sqrt(T(In)))};
  parameter<T> bias{Bias ? init::uniform<T>({Out}, T(1) / std::sqrt(T(In))) : tensor<T>{}};

  static void dp_members(auto& self, auto&& f) {
    f("weight", self.weight);
    if constexpr (Bias) {
      f("bias", self.bias);
    }
  }

  template <class X>
  auto forward(const X& x) const {
    auto in = detail::materialize(x);
    DP_CHECK(in.rank() >= 1 && in.shape()[in.rank() - 1] == In, shape_error, "dp: linear<", In, ", ", Out,
             ">: the input has shape ", in.shape(), " but its last dimension must be ", In);
    if (in.rank() == 2) {
      return add_bias(apply(in));
    }
    dp::shape out = in.shape();
    out[out.rank() - 1] = Out;
    return add_bias(apply(in.reshape({-1, In})).reshape(out));
  }
  template <class X>
  auto operator()(const X& x) const {
    return forward(x);
  }

 private:
  template <class V>
  auto apply(const V& in2d) const {
    if constexpr (detail::is_var<V>::value) {
      auto w = detail::as_operand(weight);
      w.trans = true;
      return detail::record_matmul(*in2d.graph(), detail::as_operand(in2d), std::move(w));
    } else {
      detail::check_eager_parameter(weight);
      return dp::matmul(in2d, weight.value().t());
    }
  }
  template <class V>
  auto add_bias(const V& y) const {
    if constexpr (Bias) {
      return y + bias;
    } else {
      return y * T(1);
    }
  }
};

}  // namespace dp::inline DP_ABI::nn
