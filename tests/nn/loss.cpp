#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

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

TEST_CASE("cross_entropy over whole blocks of rows and several tiles of classes matches float64") {
  // 40 rows: two blocks of 16 on the host and 8 rows after them; 70 classes: three tiles of 32.
  auto x = dp::tensor<float>(dp::randn<float>({40, 70}, dp::cpu(), 5) * 3.f);
  std::vector<std::int64_t> labels(40);
  for (std::size_t i = 0; i < labels.size(); ++i) {
    labels[i] = static_cast<std::int64_t>((i * 37) % 70);
  }
  labels[3] = labels[20] = -100;
  const auto y = dp::from_vector<std::int64_t>(labels);
  std::vector<double> xv;
  for (float v : x.to_vector()) {
    xv.push_back(v);
  }
  CHECK(nn::cross_entropy(x, y).item() == doctest::Approx(ref_ce(xv, labels, 70, 0, true, -100)).epsilon(1e-5));
  nn::cross_entropy_loss smooth{.label_smoothing = 0.3f, .reduction = nn::reduction::sum};
  CHECK(smooth(x, y).item() == doctest::Approx(ref_ce(xv, labels, 70, 0.3, false, -100)).epsilon(1e-5));
  // Gradients of whole blocks (double: the host's block form at that type) by finite differences.
  auto xd = dp::randn<double>({40, 8}, dp::cpu(), 6);
  std::vector<std::int64_t> yd(40);
  for (std::size_t i = 0; i < yd.size(); ++i) {
    yd[i] = static_cast<std::int64_t>((i * 7) % 33);
  }
  nn::manual_seed(4);
  dp_test::gradcheck(nn::linear<8, 33, double>{}, nn::cross_entropy_loss{.label_smoothing = 0.1f, .ignore_index = 5},
                     xd, dp::from_vector<std::int64_t>(yd));
}

TEST_CASE("cross_entropy on the host: a block of 16 rows gives the bits of the per-row rule") {
  // The host computes 16 rows at a time, a row per vector lane (nn/loss.hpp); the GPU and the rows
  // after the last whole block use the per-row functors. Both must give the same bits, with
  // ignored rows, non-finite logits, label smoothing and accumulated gradients.
  namespace nd = dp::nn::detail;
  for (dp::index_t classes : {1, 3, 10, 32, 33, 70}) {
    for (dp::index_t rows : {16, 35}) {
      for (float smoothing : {0.f, 0.25f}) {
        const auto x = dp::tensor<float>(dp::randn<float>({rows, classes}, dp::cpu(), 7) * 4.f).to_vector();
        std::vector<float> xs = x;
        xs[static_cast<std::size_t>(2 * classes)] = std::numeric_limits<float>::quiet_NaN();
        xs[static_cast<std::size_t>(5 * classes + classes / 2)] = std::numeric_limits<float>::infinity();
        xs[static_cast<std::size_t>((rows - 1) * classes)] = -std::numeric_limits<float>::infinity();
        std::vector<std::int64_t> y(static_cast<std::size_t>(rows));
        for (std::size_t i = 0; i < y.size(); ++i) {
          y[i] = static_cast<std::int64_t>((i * 5 + 1) % static_cast<std::size_t>(classes));
        }
        y[4] = y[static_cast<std::size_t>(rows - 2)] = -100;  // ignored rows
        const std::size_t n = static_cast<std::size_t>(rows);
        std::vector<float> loss[2], lse[2], weight[2];
        std::int64_t bad[2] = {0, 0};
        for (int form = 0; form < 2; ++form) {
          loss[form].assign(n, -1.f);
          lse[form].assign(n, -1.f);
          weight[form].assign(n, -1.f);
          const nd::ce_rows<float> f{
              xs.data(), y.data(), loss[form].data(), lse[form].data(), weight[form].data(), classes, smoothing,
              -100,      rows,     &bad[form]};
          for (dp::index_t i = 0; form == 0 && i < rows; ++i) {
            f(i);
          }
          for (dp::index_t b = 0; form == 1 && b * nd::ce_lanes < rows; ++b) {
            nd::ce_rows_block<float>{f}(b);
          }
        }
        CAPTURE(classes);
        CAPTURE(rows);
        CAPTURE(smoothing);
        CHECK(std::memcmp(loss[0].data(), loss[1].data(), n * sizeof(float)) == 0);
        CHECK(std::memcmp(lse[0].data(), lse[1].data(), n * sizeof(float)) == 0);
        CHECK(std::memcmp(weight[0].data(), weight[1].data(), n * sizeof(float)) == 0);
        CHECK(std::isnan(loss[1][2]));  // a NaN logit makes its row's loss NaN, as in PyTorch
        const float gout = 1.5f, denom = 7.f;
        for (bool accumulate : {false, true}) {
          std::vector<float> dx[2] = {x, x};  // accumulate: added to what is there
          for (int form = 0; form < 2; ++form) {
            const nd::ce_grad<float> g{xs.data(), y.data(),        lse[0].data(), weight[0].data(), &gout,
                                       &denom,    dx[form].data(), classes,       smoothing,        accumulate};
            for (dp::index_t i = 0; form == 0 && i < rows; ++i) {
              g(i);
            }
            for (dp::index_t b = 0; form == 1 && b * nd::ce_lanes < rows; ++b) {
              nd::ce_grad_block<float>{g, rows}(b);
            }
          }
          CAPTURE(accumulate);
          CHECK(std::memcmp(dx[0].data(), dx[1].data(), n * static_cast<std::size_t>(classes) * sizeof(float)) == 0);
        }
      }
    }
  }
}

namespace {
struct scaled_logits {
  nn::parameter<float> w{dp::ones<float>({4})};
  auto forward(auto x) const { return x * w; }
};
}  // namespace

TEST_CASE("an ignored row adds nothing to the gradient, whatever its logits") {
  // Rows 3 (inside the host's 16-row block) and 18 (after it) are ignored and hold logits whose
  // exp overflows float. Their gradient must be 0, not 0 * inf: the batch without them is the reference.
  std::vector<float> all, kept;
  std::vector<std::int64_t> labels, kept_labels;
  for (int i = 0; i < 20; ++i) {
    const bool ignored = i == 3 || i == 18;
    for (int j = 0; j < 4; ++j) {
      const float v = ignored ? (j == 1 ? 1e4f : 100.f) : static_cast<float>((i * 7 + j * 3) % 11) * 0.3f - 1.5f;
      all.push_back(v);
      if (!ignored) {
        kept.push_back(v);
      }
    }
    labels.push_back(ignored ? -100 : i % 4);
    if (!ignored) {
      kept_labels.push_back(i % 4);
    }
  }
  nn::trainer<scaled_logits> with{scaled_logits{}}, without{scaled_logits{}};
  const float l1 = with.backward(nn::cross_entropy, dp::from_vector<float>(all, {20, 4}), dp::from_vector(labels));
  const float l2 =
      without.backward(nn::cross_entropy, dp::from_vector<float>(kept, {18, 4}), dp::from_vector(kept_labels));
  CHECK(l1 == doctest::Approx(l2).epsilon(1e-6));
  const auto g1 = dp::detail::trainer_access::flat_grads(with).to_vector();
  const auto g2 = dp::detail::trainer_access::flat_grads(without).to_vector();
  for (std::size_t j = 0; j < 4; ++j) {
    CAPTURE(j);
    CHECK(std::isfinite(g1[j]));
    CHECK(g1[j] == doctest::Approx(g2[j]).epsilon(1e-5));
  }
}

namespace {
struct masked_logits {  // the logits plus a bias, so that backward reaches dlogits through the bias
  nn::parameter<float> b{dp::zeros<float>({3})};
  auto forward(auto x) const { return x + b; }
};
}  // namespace

TEST_CASE("cross_entropy of a row with a masked (-inf) class is finite without label smoothing, inf with it") {
  // Row {0, -inf, 1}, target 0: loss = log(e^0 + e^-inf + e^1) - 0 = log(1 + e), as PyTorch gives.
  // The sum of the row's logits is -inf; without smoothing it takes no part (0 * inf would be NaN).
  // With smoothing the loss averages -log p over every class, and -log p of the masked one is inf.
  const float inf = std::numeric_limits<float>::infinity();
  const double want = std::log(1.0 + std::exp(1.0));  // 1.3132616875...
  // softmax {1, 0, e} / (1 + e) minus the target's one-hot {1, 0, 0}, the same for every row:
  // d mean(loss) / d b = {-e / (1 + e), 0, e / (1 + e)}.
  const double p2 = std::exp(1.0) / (1.0 + std::exp(1.0));
  for (dp::index_t rows : {1, 20}) {  // 20: a block of 16 rows on the host, then 4 by the per-row rule
    CAPTURE(rows);
    std::vector<float> logits;
    for (dp::index_t i = 0; i < rows; ++i) {
      logits.insert(logits.end(), {0.f, -inf, 1.f});
    }
    const auto x = dp::from_vector<float>(logits, {rows, 3});
    const auto y = dp::from_vector<std::int64_t>(std::vector<std::int64_t>(static_cast<std::size_t>(rows), 0));
    CHECK(nn::cross_entropy(x, y).item() == doctest::Approx(want).epsilon(1e-5));
    const nn::cross_entropy_loss sum{.reduction = nn::reduction::sum};
    CHECK(sum(x, y).item() == doctest::Approx(want * static_cast<double>(rows)).epsilon(1e-5));
    const nn::cross_entropy_loss smooth{.label_smoothing = 0.1f};
    CHECK(smooth(x, y).item() == inf);
    nn::trainer<masked_logits> t{masked_logits{}};
    CHECK(t.backward(nn::cross_entropy, x, y) == doctest::Approx(want).epsilon(1e-5));
    const auto g = dp::detail::trainer_access::flat_grads(t).to_vector();
    CHECK(g[0] == doctest::Approx(-p2).epsilon(1e-5));
    CHECK(g[1] == 0.f);  // softmax of a -inf logit is 0, and it is not the target
    CHECK(g[2] == doctest::Approx(p2).epsilon(1e-5));
  }
}

TEST_CASE("cross_entropy reports targets outside the classes and wrong shapes") {
  auto x = dp::zeros<float>({2, 3});
  CHECK_THROWS_WITH_AS((void)nn::cross_entropy(x, dp::from_vector<std::int64_t>({0, 3})),
                       doctest::Contains("target of row 1 is 3, outside [0, 3)"), dp::value_error);
  CHECK_THROWS_AS((void)nn::cross_entropy(x, dp::from_vector<std::int64_t>({0})), dp::shape_error);
  // Targets on another device than the logits (on a GPU a host pointer would reach the kernel).
  const dp::tensor<float> elsewhere = dp::zeros<float>({2, 3}, dp::cpu(1));
  CHECK_THROWS_WITH_AS((void)nn::cross_entropy(elsewhere, dp::from_vector<std::int64_t>({0, 1})),
                       doctest::Contains("the logits are on cpu:1 and the targets on cpu:0"), dp::device_error);
  // Rows are checked side by side: the error still names the first bad one, on every run.
  auto many = dp::zeros<float>({20000, 3});
  std::vector<std::int64_t> labels(20000, 1);
  labels[7001] = -5;
  labels[19000] = 9;
  labels[12000] = 3;
  CHECK_THROWS_WITH_AS((void)nn::cross_entropy(many, dp::from_vector<std::int64_t>(labels)),
                       doctest::Contains("target of row 7001 is -5, outside [0, 3)"), dp::value_error);
}

TEST_CASE("cross_entropy refuses a mean over a batch whose every target is ignore_index; a sum of it is 0") {
  auto x = dp::randn<float>({3, 4}, dp::cpu(), 8);
  const auto ignored = dp::from_vector<std::int64_t>({-100, -100, -100});
  CHECK_THROWS_WITH_AS((void)nn::cross_entropy(x, ignored),
                       doctest::Contains("dp: cross_entropy: every target of rows 0 to 2 is ignore_index (-100): a "
                                         "mean over no scored row is undefined"),
                       dp::value_error);
  nn::cross_entropy_loss own{.ignore_index = 2};
  CHECK_THROWS_WITH_AS((void)own(x, dp::from_vector<std::int64_t>({2, 2, 2})), doctest::Contains("is ignore_index (2)"),
                       dp::value_error);
  CHECK(nn::cross_entropy_loss{.reduction = nn::reduction::sum}(x, ignored).item() == 0.f);
  CHECK(std::isfinite(nn::cross_entropy(x, dp::from_vector<std::int64_t>({-100, 1, -100})).item()));
  // An out-of-range target is named first; a trainer's step stops before anything is updated.
  CHECK_THROWS_WITH_AS((void)nn::cross_entropy(x, dp::from_vector<std::int64_t>({-100, 7, -100})),
                       doctest::Contains("target of row 1 is 7"), dp::value_error);
  nn::manual_seed(9);
  nn::trainer<nn::linear<4, 4>> t{nn::linear<4, 4>{}};
  (void)t.backward(nn::cross_entropy, x, dp::from_vector<std::int64_t>({0, 1, 2}));  // traced with scored rows
  CHECK_THROWS_WITH_AS((void)t.backward(nn::cross_entropy, x, ignored),
                       doctest::Contains("every target of rows 0 to 2 is ignore_index (-100)"), dp::value_error);
  CHECK(std::isfinite(t.backward(nn::cross_entropy, x, dp::from_vector<std::int64_t>({0, -100, 2}))));
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
