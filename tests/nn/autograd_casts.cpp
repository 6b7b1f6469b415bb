#include <vector>

#include <doctest/doctest.h>

#include <dp/dp.hpp>

namespace nn = dp::nn;

namespace {
struct float_model {
  nn::parameter<float> w{dp::from_vector<float>({1.f, 2.f, 3.f})};
  auto forward(auto x) const { return x * w; }
};
struct masked_by_double {  // a double value that needs a gradient, used only in a comparison
  nn::parameter<float> w{dp::from_vector<float>({1.f, 2.f, 3.f})};
  auto forward(auto x) const {
    auto d = nn::detail::materialize(dp::cast<double>(x * w));
    return x * w * dp::cast<float>(d > 0.0);
  }
};
}  // namespace

TEST_CASE("a loss computed through a cast to the other floating type is refused, not a zero gradient") {
  nn::trainer<float_model> t{float_model{}};
  const auto x = dp::ones<float>({1, 3}), y = dp::zeros<float>({1, 3});
  auto in_double = [](const auto& out, const auto& target) {
    return dp::cast<float>(dp::mean(dp::square(dp::cast<double>(out - target))));
  };
  CHECK_THROWS_WITH_AS((void)t.backward(in_double, x, y),
                       doctest::Contains("gradients do not flow through a cast between floating types"),
                       dp::value_error);
  CHECK(t.steps() == 0);
  // The same loss in float: d/dw mean((x w)^2) = 2 w / 3.
  CHECK(t.backward(nn::mse_loss, x, y) == doctest::Approx(14.0 / 3.0));
  const auto g = dp::detail::trainer_access::flat_grads(t).to_vector();
  CHECK(g[0] == doctest::Approx(2.0 / 3.0));
  CHECK(g[2] == doctest::Approx(2.0));
  // A value of the other type under a comparison gets gradient 0 by the rule itself: taken.
  nn::trainer<masked_by_double> m{masked_by_double{}};
  CHECK(m.backward(nn::mse_loss, x, y) == doctest::Approx(14.0 / 3.0));
  const auto gm = dp::detail::trainer_access::flat_grads(m).to_vector();
  CHECK(gm[0] == doctest::Approx(2.0 / 3.0));
  CHECK(gm[2] == doctest::Approx(2.0));
}

namespace {
struct times_own_mask {  // v * bool(v), v = x w: the mask is a step, with no gradient of its own
  nn::parameter<float> w{dp::from_vector<float>({2.f, 0.f, -3.f})};
  auto forward(auto x) const {
    auto v = nn::detail::materialize(x * w);
    return v * dp::cast<bool>(v);
  }
};
}  // namespace

TEST_CASE("a cast to bool passes no gradient, as PyTorch's x.bool() has none") {
  // loss = sum(v * (v != 0)) with v = w (x = 1): d/dw = (w != 0) = {1, 0, 1}. Passing the gradient
  // through the cast added v: {3, 0, -2}.
  nn::trainer<times_own_mask> t{times_own_mask{}};
  auto sum_loss = [](const auto& out, const auto& target) { return dp::sum(out - target); };
  CHECK(t.backward(sum_loss, dp::ones<float>({1, 3}), dp::zeros<float>({1, 3})) == doctest::Approx(-1.0));
  CHECK(t.model().w.grad().to_vector() == std::vector<float>{1.f, 0.f, 1.f});
}
