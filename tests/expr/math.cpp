#include <cmath>
#include <limits>
#include <random>

#include <doctest/doctest.h>

#include <dp/dp.hpp>
#include <dp/expr/math.hpp>

namespace m = dp::detail::math;

namespace {
/// Largest error in units of the last place of float, against the double-precision C library.
double worst_ulp(float (*f)(float), double (*ref)(double), float lo, float hi, int n = 200000) {
  std::mt19937 g(3);
  std::uniform_real_distribution<float> d(lo, hi);
  double worst = 0;
  for (int i = 0; i < n; ++i) {
    const float x = d(g);
    const double want = ref(x);
    const float w = static_cast<float>(want);
    const double ulp = std::nextafter(std::fabs(w), INFINITY) - std::fabs(w);
    worst = std::max(worst, std::fabs(static_cast<double>(f(x)) - want) / ulp);
  }
  return worst;
}
double sigmoid_ref(double x) { return 1.0 / (1.0 + std::exp(-x)); }
}  // namespace

TEST_CASE("vectorisable float functions are within two ulp of the C library in double") {
  CHECK(worst_ulp(m::exp, std::exp, -87.f, 88.f) <= 2.0);
  CHECK(worst_ulp(m::log, std::log, 1e-30f, 1e30f) <= 2.0);
  CHECK(worst_ulp(m::sin, std::sin, -1e4f, 1e4f) <= 2.0);
  CHECK(worst_ulp(m::cos, std::cos, -1e4f, 1e4f) <= 2.0);
  CHECK(worst_ulp(m::tanh, std::tanh, -12.f, 12.f) <= 2.0);
  CHECK(worst_ulp(m::tanh, std::tanh, -1e-3f, 1e-3f) <= 2.0);
  CHECK(worst_ulp(m::sigmoid, sigmoid_ref, -40.f, 40.f) <= 2.0);
  CHECK(worst_ulp(m::erf, std::erf, -6.f, 6.f) <= 2.0);
  CHECK(worst_ulp(m::erf, std::erf, -1e-3f, 1e-3f) <= 2.0);
}

TEST_CASE("special values: infinities, zero, negatives and NaN") {
  constexpr float inf = std::numeric_limits<float>::infinity();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  CHECK(m::exp(1000.f) == inf);
  CHECK(m::exp(-1000.f) == 0.f);
  CHECK(std::isnan(m::exp(nan)));
  CHECK(m::log(0.f) == -inf);
  CHECK(m::log(inf) == inf);
  CHECK(std::isnan(m::log(-1.f)));
  CHECK(std::isnan(m::log(nan)));
  CHECK(std::isnan(m::sin(inf)));
  CHECK(m::tanh(1000.f) == 1.f);
  CHECK(m::tanh(-1000.f) == -1.f);
  CHECK(std::isnan(m::tanh(nan)));
  CHECK(m::sigmoid(-1000.f) == 0.f);
  CHECK(m::erf(10.f) == 1.f);
  CHECK(m::log(std::numeric_limits<float>::denorm_min()) ==
        doctest::Approx(std::log(static_cast<double>(std::numeric_limits<float>::denorm_min()))));
}

TEST_CASE("relu, its gradient and clamping keep NaN as PyTorch does") {
  // torch.relu(torch.tensor([nan, -1., 2., inf, -inf])) -> [nan, 0., 2., inf, 0.]
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  const auto y = dp::tensor<float>(dp::relu(dp::from_vector<float>({nan, -1.f, 2.f, inf, -inf}))).to_vector();
  CHECK(std::isnan(y[0]));
  CHECK(y[1] == 0.f);
  CHECK(y[2] == 2.f);
  CHECK(y[3] == inf);
  CHECK(y[4] == 0.f);
  // A NaN feature makes the loss NaN (it used to be hidden: relu turned it into 0).
  const auto s = dp::sum(dp::relu(dp::from_vector<float>({1.f, nan, 3.f}))).item();
  CHECK(std::isnan(s));
}
