#include <bit>
#include <cmath>
#include <cstdint>
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

TEST_CASE("sin and cos of float reduce every argument exactly, however large") {
  // Random bit patterns cover every exponent; the C library's double sin reduces exactly.
  std::mt19937 g(5);
  double worst = 0;
  for (int i = 0; i < 200000; ++i) {
    const float x = std::bit_cast<float>(static_cast<std::uint32_t>(g()));
    if (!std::isfinite(x)) {
      continue;
    }
    for (const bool is_cos : {false, true}) {
      const double want = is_cos ? std::cos(static_cast<double>(x)) : std::sin(static_cast<double>(x));
      const float w = static_cast<float>(want);
      const double ulp = std::nextafter(std::fabs(w), INFINITY) - std::fabs(w);
      worst = std::max(worst, std::fabs(static_cast<double>(is_cos ? m::cos(x) : m::sin(x)) - want) / ulp);
    }
  }
  CHECK(worst <= 1.0);
  // The floats nearest a multiple of pi/2 (found from the continued fraction of 2^e 2/pi; the
  // values are mpmath's at 600 bits): the reduction must keep about 30 more bits than float has.
  CHECK(m::cos(0x1.f37c8ap+95f) == doctest::Approx(-1.6147697982476212e-9).epsilon(1e-7));
  CHECK(m::sin(0x1.f37c8ap+96f) == doctest::Approx(-3.2295395964952424e-9).epsilon(1e-7));
  CHECK(m::cos(0x1.47d0fep+34f) == doctest::Approx(-2.0126460319185526e-9).epsilon(1e-7));
  CHECK(m::cos(0x1.f9cbe2p+7f) == doctest::Approx(-4.1857068037572076e-9).epsilon(1e-7));
  CHECK(m::sin(-0x1.f37c8ap+96f) == doctest::Approx(3.2295395964952424e-9).epsilon(1e-7));
  CHECK(std::signbit(m::sin(-0.0f)));
  CHECK(m::cos(-0.0f) == 1.0f);
  CHECK(std::isnan(m::cos(std::numeric_limits<float>::infinity())));
  CHECK(std::isnan(m::sin(std::numeric_limits<float>::quiet_NaN())));
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
  // The gradient is PyTorch's threshold_backward: 0 where x <= 0, else the incoming g, so NaN passes g on.
  const dp::detail::relu_op r;
  CHECK(r.grad(nan, 2.f) == 2.f);
  CHECK(r.grad(-1.f, 2.f) == 0.f);
  CHECK(r.grad(0.f, 2.f) == 0.f);
  CHECK(r.grad(3.f, 2.f) == 2.f);
  CHECK(r.grad(inf, 2.f) == 2.f);
  CHECK(r.grad(-inf, 2.f) == 0.f);
}
