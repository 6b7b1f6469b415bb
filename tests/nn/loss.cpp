#include <cmath>

#include <doctest/doctest.h>

#include <dp/dp.hpp>

#include "../support/gradcheck.hpp"

namespace nn = dp::nn;

namespace {
/// float64 reference of cross entropy with label smoothing and an ignored index.
double ref_ce(const std::vector<double>& x, const std::vector<std::int64_t>& y, int c, double eps, bool mean,
              std::int64_t ignore) {
  double total = 0, count = 0;
  for (std::size_t i = 0; i < y.size(); ++i) {
    if (y[i] == ignore) {
      continue;
    }
    double m = -1e300;
    for (int j = 0; j < c; ++j) {
      m = std::max(m, x[i * c + j]);
    }
    double s = 0, sx = 0;
    for (int j = 0; j < c; ++j) {
      s += std::exp(x[i * c + j] - m);
      sx += x[i * c + j];
    }
    const double lse = m + std::log(s);
    total += (1 - eps) * (lse - x[i * c + y[i]]) + eps * (lse - sx / c);
    count += 1;
  }
  return mean ? total / count : total;
}
}  // namespace

TEST_CASE("cross_entropy matches a float64 reference (smoothing, ignore_index, mean and sum)") {
  auto x = dp::randn<double>({6, 5}, dp::cpu(), 1);
  auto y = dp::from_vector<std::int64_t>({0, 4, -100, 2, 2, 1});
  const auto xv = x.to_vector();
  const auto yv = y.to_vector();
  CHECK(nn::cross_entropy(x, y).item() == doctest::Approx(ref_ce(xv, yv, 5, 0, true, -100)));
  nn::cross_entropy_loss smooth{.label_smoothing = 0.2f, .reduction = nn::reduction::sum};
  CHECK(smooth(x, y).item() == doctest::Approx(ref_ce(xv, yv, 5, 0.2, false, -100)));
}

TEST_CASE("cross_entropy gradients match finite differences") {
  nn::manual_seed(2);
  nn::cross_entropy_loss smooth{.label_smoothing = 0.1f, .ignore_index = 3};
  auto x = dp::randn<double>({7, 4}, dp::cpu(), 3);
  auto y = dp::from_vector<std::int64_t>({0, 1, 3, 3, 2, 1, 0});
  dp_test::gradcheck(nn::linear<4, 4, double>{}, smooth, x, y);
  nn::cross_entropy_loss sum{.reduction = nn::reduction::sum};
  dp_test::gradcheck(nn::linear<4, 4, double>{}, sum, x, y);
}

TEST_CASE("cross_entropy reports targets outside the classes and wrong shapes") {
  auto x = dp::zeros<float>({2, 3});
  CHECK_THROWS_WITH_AS((void)nn::cross_entropy(x, dp::from_vector<std::int64_t>({0, 3})),
                       doctest::Contains("target of row 1 is 3, outside [0, 3)"), dp::value_error);
  CHECK_THROWS_AS((void)nn::cross_entropy(x, dp::from_vector<std::int64_t>({0})), dp::shape_error);
  // Rows are checked side by side: the error still names the first bad one, on every run.
  auto many = dp::zeros<float>({20000, 3});
  std::vector<std::int64_t> labels(20000, 1);
  labels[7001] = -5;
  labels[19000] = 9;
  labels[12000] = 3;
  CHECK_THROWS_WITH_AS((void)nn::cross_entropy(many, dp::from_vector<std::int64_t>(labels)),
                       doctest::Contains("target of row 7001 is -5, outside [0, 3)"), dp::value_error);
}

TEST_CASE("mse_loss: value and gradients") {
  auto a = dp::from_vector<double>({1, 2, 3}), b = dp::from_vector<double>({0, 2, 5});
  CHECK(nn::mse_loss(a, b).item() == doctest::Approx(5.0 / 3));
  CHECK(nn::mse_loss_fn{.reduction = nn::reduction::sum}(a, b).item() == doctest::Approx(5.0));
  nn::manual_seed(4);
  dp_test::gradcheck(nn::linear<3, 2, double>{}, nn::mse_loss_fn{.reduction = nn::reduction::sum},
                     dp::randn<double>({4, 3}, dp::cpu(), 5), dp::randn<double>({4, 2}, dp::cpu(), 6));
  CHECK_THROWS_AS((void)nn::mse_loss(a, dp::zeros<double>({2})), dp::shape_error);
}
