#include <cmath>
#include <limits>
#include <vector>

#include <doctest/doctest.h>

#include <dp/dp.hpp>

namespace nn = dp::nn;

namespace {
struct row_max {
  nn::parameter<double> w{dp::from_vector<double>({1.0, 1.0, 1.0, 0.5})};
  auto forward(auto x) const { return dp::max(x * w, 1, true) + dp::min(x * w, 1, true); }
};
}  // namespace

TEST_CASE("max and min share their gradient evenly among tied elements, as PyTorch's amax and amin do") {
  nn::trainer<row_max> t{row_max{}};
  // x w = {2, 2, 2, 1}: the max is tied three ways, the min is not. Loss (max + min - 0)^2 = 9,
  // whose gradient 6 reaches the max's three elements as 2 each (x 2 = 4 for w) and the min's as 6.
  const auto x = dp::from_vector<double>({2.0, 2.0, 2.0, 2.0}, {1, 4});
  CHECK(t.backward(nn::mse_loss, x, dp::zeros<double>({1, 1})) == doctest::Approx(9.0));
  const auto g = dp::detail::trainer_access::flat_grads(t).to_vector();
  CHECK(g[0] == doctest::Approx(4.0));  // the full gradient to each tied element would be 12
  CHECK(g[1] == doctest::Approx(4.0));
  CHECK(g[2] == doctest::Approx(4.0));
  CHECK(g[3] == doctest::Approx(12.0));
}

namespace {
const double nan = std::numeric_limits<double>::quiet_NaN();
struct nan_through_max {
  nn::parameter<double> a{dp::from_vector<double>({nan, 1.0, 0.0})};
  nn::parameter<double> b{dp::from_vector<double>({1.0, 2.0, 0.0})};
  nn::parameter<double> w{dp::from_vector<double>({1.0, nan, 2.0})};
  auto forward(auto x) const {  // x: ones [1, 3]
    auto row = x * w;
    return dp::sum(dp::maximum(x * a, x * b)) + dp::sum(dp::minimum(x * a, x * b)) + dp::sum(dp::max(row, 1, true)) +
           dp::sum(dp::min(row, 1, true));
  }
};
}  // namespace

TEST_CASE("NaN through max, min, maximum and minimum gives PyTorch's gradients, not 0") {
  // PyTorch 1.13 (Debian's python3-torch), float64, x = ones(1, 3):
  //   a = [nan, 1, 0], b = [1, 2, 0]; (maximum(x*a, x*b).sum() + minimum(x*a, x*b).sum()).backward()
  //   gives a.grad = b.grad = [2, 1, 1] (a NaN comparison passes g to both operands, a tie g / 2);
  //   w = [1, nan, 2]; (amax(x*w, 1, keepdim=True).sum() + amin(...).sum()).backward() gives
  //   w.grad = [nan, nan, nan] (dp gave 0 for all of these where a NaN was involved).
  nn::trainer<nan_through_max> t{nan_through_max{}};
  t.allow_non_finite_loss(true);
  const auto sum_loss = [](const auto& out, const auto& y) { return dp::sum(out - y); };
  (void)t.backward(sum_loss, dp::ones<double>({1, 3}), dp::zeros<double>({1}));
  CHECK(t.model().a.grad().to_vector() == std::vector<double>{2.0, 1.0, 1.0});
  CHECK(t.model().b.grad().to_vector() == std::vector<double>{2.0, 1.0, 1.0});
  for (const double g : t.model().w.grad().to_vector()) {
    CHECK(std::isnan(g));
  }
}

namespace {
struct power {
  nn::parameter<double> a{dp::from_vector<double>({-2.0, 0.0, 0.0, 3.0, -1.5})};
  nn::parameter<double> b{dp::from_vector<double>({2.0, 2.0, -1.0, 0.5, 0.0})};
  auto forward(auto x) const { return dp::sum(dp::pow(x * a, x * b)); }  // x: ones [1, 5]
};
}  // namespace

TEST_CASE("pow's gradients are PyTorch's at a negative or zero base") {
  // PyTorch 1.13, float64: a = [-2, 0, 0, 3, -1.5], b = [2, 2, -1, 0.5, 0]; pow(a, b).sum().backward()
  // gives a.grad = [-4, 0, -inf, 0.288675, 0] and b.grad = [nan, 0, -inf, 1.902852, nan].
  nn::trainer<power> t{power{}};
  t.allow_non_finite_loss(true);  // 0^-1 is inf
  const auto sum_loss = [](const auto& out, const auto& y) { return dp::sum(out - y); };
  (void)t.backward(sum_loss, dp::ones<double>({1, 5}), dp::zeros<double>({1}));
  const auto ga = t.model().a.grad().to_vector(), gb = t.model().b.grad().to_vector();
  CHECK(ga[0] == -4.0);
  CHECK(ga[1] == 0.0);
  CHECK(ga[2] == -std::numeric_limits<double>::infinity());
  CHECK(ga[3] == doctest::Approx(0.288675).epsilon(1e-6));
  CHECK(ga[4] == 0.0);
  CHECK(std::isnan(gb[0]));
  CHECK(gb[1] == 0.0);
  CHECK(gb[2] == -std::numeric_limits<double>::infinity());
  CHECK(gb[3] == doctest::Approx(1.902852).epsilon(1e-6));
  CHECK(std::isnan(gb[4]));
}

namespace {
struct relu_of_weights {
  nn::parameter<float> w{dp::from_vector<float>({std::numeric_limits<float>::quiet_NaN(), -1.f, 0.f, 2.f})};
  auto forward(auto x) const { return dp::relu(x * w); }
};
}  // namespace

TEST_CASE("relu's gradient passes the incoming gradient on where its input is NaN, as PyTorch's threshold_backward") {
  nn::trainer<relu_of_weights> t{relu_of_weights{}};
  t.allow_non_finite_loss(true);  // relu(NaN) is NaN, so the loss is
  const auto x = dp::ones<float>({1, 4}), y = dp::zeros<float>({1, 4});
  auto total = [](const auto& out, const auto& target) { return dp::sum(out - target); };
  CHECK(std::isnan(t.backward(total, x, y)));
  // d/dw sum(relu(x w)) = x * (x w <= 0 ? 0 : 1) with x = 1; NaN <= 0 is false, so NaN passes 1 on.
  const auto g = dp::detail::trainer_access::flat_grads(t).to_vector();
  CHECK(g[0] == 1.f);
  CHECK(g[1] == 0.f);
  CHECK(g[2] == 0.f);  // at 0 PyTorch gives 0 too
  CHECK(g[3] == 1.f);
}
