#include <doctest/doctest.h>

#include <dp/dp.hpp>

#include "../support/gradcheck.hpp"

namespace nn = dp::nn;

namespace {

/// Every differentiable element-wise function and operator, broadcast against parameters.
struct expression_model {
  nn::linear<3, 4, double> fc;
  nn::parameter<double> a{dp::from_vector<double>({0.7, -0.4, 1.1, 0.3})};
  nn::parameter<double> b{dp::from_vector<double>({0.5, 1.5, 2.0, 0.8})};
  auto forward(auto x) const {
    auto h = fc(x);
    auto u = dp::tanh(h) * a + dp::sigmoid(h * b) - dp::exp(-dp::square(h)) / (b + 1.0) + dp::pow(dp::abs(h) + 1.0, b) +
             dp::maximum(h, a * 0.1) - dp::minimum(h, -a) + dp::where(h > 0.0, h * a, h / b) + dp::clamp(h, -0.5, 0.5) +
             dp::log(dp::square(h) + 1.0) + dp::sqrt(dp::square(h) + 1.0) + dp::gelu(h) + dp::relu(h) +
             dp::rsqrt(dp::square(h) + 2.0) + dp::sin(h) * dp::cos(a) - h * h * h;
    return u;
  }
};

}  // namespace

TEST_CASE("the derived backward of every element-wise function matches finite differences") {
  auto x = dp::randn<double>({6, 3}, dp::cpu(), 1);
  auto y = dp::randn<double>({6, 4}, dp::cpu(), 2);
  dp::nn::manual_seed(3);
  dp_test::gradcheck(expression_model{}, nn::mse_loss, x, y);
}
