#pragma once

#include <dp/dp.hpp>

namespace dp_test {

/// A small classifier with every kind of state: parameters, batch-norm buffers and dropout.
struct classifier {
  dp::nn::linear<64, 128> fc1;
  dp::nn::batch_norm<128> bn;
  dp::nn::linear<128, 10> fc2;
  dp::nn::dropout drop{0.1f};
  dp::nn::parameter<float> scale{dp::ones<float>({10})};
  auto forward(auto x) const { return fc2(drop(dp::relu(bn(fc1(x))))) * scale; }
};

/// Linear, layer norm, gelu, linear: a model whose replayed plan must match a fresh trace.
struct replay_model {
  dp::nn::linear<5, 4> a;
  dp::nn::layer_norm<4> ln;
  dp::nn::linear<4, 3> b;
  auto forward(auto x) const { return b(dp::gelu(ln(a(x)))); }
};

}  // namespace dp_test
