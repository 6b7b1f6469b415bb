#include <doctest/doctest.h>

#include <dp/dp.hpp>

#include "../support/gradcheck.hpp"

namespace nn = dp::nn;

namespace {

/// Reductions, views and a parameter used twice.
struct reduction_model {
  nn::linear<5, 6, double> fc;
  nn::parameter<double> w{dp::from_vector<double>({0.3, -0.2, 0.9, 1.2, -0.7, 0.4})};
  auto forward(auto x) const {
    auto h = fc(x) * w;                                       // [N, 6]
    auto s = dp::sum(h * h, 1, true) + dp::mean(h, 0, true);  // [N, 6] by broadcasting
    auto m = dp::max(h, 1, true) - dp::min(h * w, 1, true);
    auto v = dp::nn::detail::materialize(s + m).reshape({-1, 3, 2}).transpose(1, 2);  // [N, 2, 3]
    return dp::mean(v * dp::from_vector<double>({1.0, -2.0, 0.5}), {1});              // [N, 3]
  }
};

struct softmax_model {
  nn::linear<4, 5, double> fc;
  auto forward(auto x) const {
    auto h = fc(x);
    return nn::softmax(h, 1) * 2.0 + nn::log_softmax(h * 0.5, 1);
  }
};

}  // namespace

TEST_CASE("reductions (sum, mean, max, min over axes), views and repeated parameters backpropagate") {
  auto x = dp::randn<double>({4, 5}, dp::cpu(), 4);
  auto y = dp::randn<double>({4, 3}, dp::cpu(), 5);
  dp::nn::manual_seed(6);
  dp_test::gradcheck(reduction_model{}, nn::mse_loss, x, y);
}

TEST_CASE("softmax and log_softmax backpropagate") {
  auto x = dp::randn<double>({7, 4}, dp::cpu(), 7);
  auto y = dp::randn<double>({7, 5}, dp::cpu(), 8);
  dp::nn::manual_seed(9);
  dp_test::gradcheck(softmax_model{}, nn::mse_loss, x, y);
}
