#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <type_traits>
#include <vector>

#include <doctest/doctest.h>

#include <dp/dp.hpp>

#include "../support/gradcheck.hpp"

namespace nn = dp::nn;

namespace {
template <class L, class In>
struct head {  // layer -> linear to a scalar per sample, so any layer can feed an MSE loss
  L layer;
  In out;
  auto forward(auto x) const { return out(layer(x)); }
};
}  // namespace

namespace {
struct model0 {
  nn::linear<6, 6, double> fc;
  nn::layer_norm<6, double> ln;
  auto forward(auto x) const { return ln(fc(x)); }
};

struct model1 {
  nn::linear<4, 3, double> fc;
  nn::batch_norm<3, double> bn;
  auto forward(auto x) const { return bn(fc(x)); }
};

struct model2 {
  nn::conv2d<2, 3, 3, 1, 1, double> conv;
  nn::batch_norm<3, double> bn;
  auto forward(auto x) const { return bn(conv(x)); }
};

struct model3 {
  nn::conv2d<2, 3, 3, 2, 1, double> conv;
  nn::max_pool2d<2, 1, 1> pool;
  nn::flatten flat;
  nn::linear<3 * 5 * 5, 2, double> fc;
  auto forward(auto x) const { return fc(flat(pool(conv(x)))); }
};

// Two convolutions: the first one's weight gradient goes through the second one's input gradient
// (col2im), at stride 1 with a window wider than the padded input's edges, and at stride 2.
template <dp::index_t S>
struct two_convs {
  nn::conv2d<2, 3, 3, 1, 1, double> first;
  nn::conv2d<3, 2, 5, S, 2, double> second;
  nn::flatten flat;
  nn::linear<2 * ((4 + 4 - 5) / S + 1) * ((5 + 4 - 5) / S + 1), 2, double> fc;
  auto forward(auto x) const { return fc(flat(second(dp::tanh(first(x))))); }
};

struct model4 {
  nn::embedding<7, 3, double> emb;
  nn::linear<3, 2, double> fc;
  auto forward(auto idx) const { return fc(dp::tanh(emb(idx))); }
};

struct model5 {
  nn::parameter<float> w{dp::ones<float>({50})};
  nn::dropout drop{0.5f};
  auto forward(auto x) const { return drop(x * w); }
};
// A block that names no widths (so residual checks it at run time) and narrows 8 to 1.
struct narrowing {
  nn::linear<8, 1> fc;
  auto forward(auto x) const { return fc(x); }
};
// One dropout module applied twice.
struct dropout_twice {
  nn::parameter<float> w{dp::ones<float>({50})};
  nn::dropout drop{0.5f};
  auto forward(auto x) const {
    auto h = x * w;
    return drop(h) - drop(h);
  }
};
}  // namespace

TEST_CASE("linear and activations: gradients match finite differences") {
  nn::manual_seed(1);
  using net =
      nn::sequential<nn::linear<5, 7, double>, nn::tanh, nn::linear<7, 6, double>, nn::gelu, nn::linear<6, 4, double>,
                     nn::sigmoid, nn::linear<4, 3, double>, nn::relu, nn::linear<3, 2, double>>;
  dp_test::gradcheck(net{}, nn::mse_loss, dp::randn<double>({8, 5}, dp::cpu(), 2),
                     dp::randn<double>({8, 2}, dp::cpu(), 3));
}

TEST_CASE("linear applies to the last dimension of 3-D inputs") {
  nn::manual_seed(4);
  dp_test::gradcheck(nn::linear<4, 3, double>{}, nn::mse_loss, dp::randn<double>({2, 5, 4}, dp::cpu(), 5),
                     dp::randn<double>({2, 5, 3}, dp::cpu(), 6));
}

TEST_CASE("layer_norm: gradients match finite differences; output is normalised") {
  nn::manual_seed(7);
  model0 model;
  model.ln.weight.assign(dp::randn<double>({6}, dp::cpu(), 8));
  model.ln.bias.assign(dp::randn<double>({6}, dp::cpu(), 9));
  dp_test::gradcheck(model, nn::mse_loss, dp::randn<double>({5, 6}, dp::cpu(), 10),
                     dp::randn<double>({5, 6}, dp::cpu(), 11));
  nn::layer_norm<6, double> plain;
  dp::tensor<double> y = plain(dp::randn<double>({3, 6}, dp::cpu(), 12));
  CHECK(std::fabs(dp::mean(y).item()) < 1e-12);
  CHECK(dp::mean(dp::square(y), 1).to_vector()[0] == doctest::Approx(1.0).epsilon(1e-4));
}

TEST_CASE("batch_norm in training: gradients match; running statistics follow PyTorch's update") {
  nn::manual_seed(13);
  dp_test::gradcheck(model1{}, nn::mse_loss, dp::randn<double>({6, 4}, dp::cpu(), 14),
                     dp::randn<double>({6, 3}, dp::cpu(), 15));
  // one eager training forward from the initial statistics
  nn::batch_norm<2, double> bn;
  auto x = dp::from_vector<double>({1, 10, 2, 20, 3, 30, 6, 40}, {4, 2});
  {
    nn::mode_scope train(true);
    dp::tensor<double> y = bn(x);
  }
  // mean {3, 25}; unbiased variance {14/3, 500/3}; momentum 0.1 from (0, 1)
  auto rm = bn.running_mean.value().to_vector(), rv = bn.running_var.value().to_vector();
  CHECK(rm[0] == doctest::Approx(0.3));
  CHECK(rm[1] == doctest::Approx(2.5));
  CHECK(rv[0] == doctest::Approx(0.9 + 0.1 * 14.0 / 3));
  CHECK(rv[1] == doctest::Approx(0.9 + 0.1 * 500.0 / 3));
  CHECK(bn.num_batches_tracked.value().item() == 1);
}

TEST_CASE("batch_norm in training: no rows give an empty output and leave the statistics; one row is refused") {
  // PyTorch: an empty batch passes through (running statistics untouched, the batch counted:
  // _BatchNorm.forward adds 1 to num_batches_tracked before it normalises); one value per channel
  // has no variance ("Expected more than 1 value per channel when training").
  nn::batch_norm<2, double> bn;
  bn.running_mean.assign(dp::from_vector<double>({1, 2}));
  nn::mode_scope train(true);
  dp::tensor<double> y = bn(dp::zeros<double>({0, 2}));
  CHECK(y.shape() == dp::shape{0, 2});
  CHECK(bn.running_mean.value().to_vector() == std::vector<double>{1, 2});
  CHECK(bn.running_var.value().to_vector() == std::vector<double>{1, 1});
  CHECK(bn.num_batches_tracked.value().item() == 1);
  CHECK_THROWS_WITH_AS((void)bn(dp::zeros<double>({1, 2})),
                       doctest::Contains("training needs more than one value per channel, got shape {1, 2}"),
                       dp::value_error);
}

TEST_CASE("batch_norm over [N, C, H, W] and in evaluation mode") {
  nn::manual_seed(16);
  dp_test::gradcheck(model2{}, nn::mse_loss, dp::randn<double>({2, 2, 4, 4}, dp::cpu(), 17),
                     dp::randn<double>({2, 3, 4, 4}, dp::cpu(), 18));
  nn::batch_norm<2, double> bn;
  bn.running_mean.assign(dp::from_vector<double>({1, 2}));
  bn.running_var.assign(dp::from_vector<double>({4, 9}));
  dp::tensor<double> y = bn(dp::from_vector<double>({3, 2}, {1, 2}));  // evaluation outside a trainer
  CHECK(y.to_vector()[0] == doctest::Approx(2 / std::sqrt(4 + 1e-5)));
  CHECK(y.to_vector()[1] == doctest::Approx(0.0));
}

TEST_CASE("layer_norm and batch_norm refuse eps <= 0 or not finite and momentum outside [0, 1], at every forward") {
  const double nan = std::numeric_limits<double>::quiet_NaN(), inf = std::numeric_limits<double>::infinity();
  const auto x = dp::randn<double>({4, 6}, dp::cpu(), 30);
  for (double eps : {-1.0, 0.0, nan, inf, 1e-310}) {  // 1e-310: subnormal, flushed to 0 on the host
    CAPTURE(eps);
    nn::layer_norm<6, double> ln;
    ln.eps = eps;
    CHECK_THROWS_WITH_AS((void)ln(x), doctest::Contains("dp: layer_norm<6>: eps must be finite and > 0"),
                         dp::value_error);
    nn::batch_norm<6, double> bn;
    bn.eps = eps;
    CHECK_THROWS_WITH_AS((void)bn(x), doctest::Contains("dp: batch_norm<6>: eps must be finite and > 0"),
                         dp::value_error);
  }
  for (double momentum : {-0.1, 1.5, 5.0, nan}) {
    CAPTURE(momentum);
    nn::batch_norm<6, double> bn;
    bn.momentum = momentum;
    nn::mode_scope train(true);
    CHECK_THROWS_WITH_AS((void)bn(x), doctest::Contains("dp: batch_norm<6>: momentum must lie in [0, 1]"),
                         dp::value_error);
    CHECK(bn.running_mean.value().to_vector() == std::vector<double>(6, 0.0));  // nothing was updated
    CHECK(bn.num_batches_tracked.value().item() == 0);
  }
  // The bounds themselves are settings PyTorch uses: momentum 0 keeps the running statistics, 1 takes
  // the batch's; a tiny eps is accepted.
  for (double momentum : {0.0, 1.0}) {
    nn::batch_norm<2, double> bn;
    bn.momentum = momentum;
    bn.eps = 1e-300;
    nn::mode_scope train(true);
    (void)dp::tensor<double>(bn(dp::from_vector<double>({1, 10, 3, 30}, {2, 2})));
    CHECK(bn.running_mean.value().to_vector() ==
          (momentum == 0 ? std::vector<double>{0, 0} : std::vector<double>{2, 20}));
  }
  // In float, 1e-40 is subnormal: it read as 0 and a constant row gave NaN (PyTorch gives the bias).
  nn::layer_norm<4> flushed;
  flushed.eps = 1e-40f;
  CHECK_THROWS_WITH_AS((void)flushed(dp::full<float>({1, 4}, 3.f)), doctest::Contains("a normal number"),
                       dp::value_error);
  flushed.eps = std::numeric_limits<float>::min();
  CHECK(dp::tensor<float>(flushed(dp::full<float>({1, 4}, 3.f))).to_vector() == std::vector<float>(4, 0.f));
  // A trainer reads settings when it traces a step; an edit retraces, and the new value is checked.
  nn::trainer<model0> t{model0{}};
  (void)t.backward(nn::mse_loss, x, dp::randn<double>({4, 6}, dp::cpu(), 31));
  t.edit([](model0& m) { m.ln.eps = -1e-5; });
  CHECK_THROWS_WITH_AS((void)t.backward(nn::mse_loss, x, dp::randn<double>({4, 6}, dp::cpu(), 31)),
                       doctest::Contains("layer_norm<6>: eps must be finite and > 0 (it keeps 1/sqrt(var + eps) "
                                         "finite), and a normal number of the layer's type (a subnormal one is "
                                         "flushed to 0), got -1e-05"),
                       dp::value_error);
}

TEST_CASE("softmax and log_softmax name themselves when the axis is out of range") {
  const auto x = dp::zeros<float>({2, 3});
  CHECK_THROWS_WITH_AS((void)dp::tensor<float>(nn::softmax(x, 5)),
                       doctest::Contains("dp: softmax: axis 5 is out of range for a tensor of rank 2"),
                       dp::value_error);
  CHECK_THROWS_WITH_AS((void)dp::tensor<float>(nn::log_softmax(x, -3)),
                       doctest::Contains("dp: log_softmax: axis -3 is out of range for a tensor of rank 2"),
                       dp::value_error);
  CHECK(dp::tensor<float>(nn::softmax(x, -2)).to_vector() == std::vector<float>(6, 0.5f));
}

TEST_CASE("conv2d with stride and padding, max_pool2d and flatten: gradients match") {
  nn::manual_seed(19);
  dp_test::gradcheck(model3{}, nn::mse_loss, dp::randn<double>({3, 2, 7, 7}, dp::cpu(), 20),
                     dp::randn<double>({3, 2}, dp::cpu(), 21));
}

namespace {
/// A linear head plus a conv2d on a second input, which may hold no sample.
struct head_and_side {
  nn::conv2d<1, 1, 1, 1, 0, double> side;
  nn::linear<1, 1, double> head;
  auto forward(auto x, auto z) const { return head(x) + dp::sum(side(z)); }
};
}  // namespace

namespace {
/// A convolution cut off from the loss by nn::detach, then a max pool or a second convolution (ops
/// that read their input by slot) and a linear head: 1x6x6 -> 2x4x4 -> 2x2x2 -> 3.
template <bool Pool>
struct detached_conv {
  nn::conv2d<1, 2, 3> first;
  nn::conv2d<2, 2, 3> second;
  nn::max_pool2d<2> pool;
  nn::flatten flat;
  nn::linear<8, 3> head;
  auto forward(auto x) const {
    auto h = nn::detach(first(x));
    if constexpr (Pool) {
      return head(flat(pool(h)));
    } else {
      return head(flat(second(h)));
    }
  }
};

bool all_zero(const dp::tensor<float>& t) {
  const auto v = t.to_vector();
  return std::all_of(v.begin(), v.end(), [](float e) { return e == 0.f; });
}
}  // namespace

TEST_CASE("nn::detach cuts the gradient before a max pool, a convolution and cross_entropy too") {
  // PyTorch: first.weight.grad is None (dp: 0, as for any parameter the loss does not reach). The
  // pool and the convolution passed the gradient through the detached value into the first layer.
  const auto x = dp::randn<float>({2, 1, 6, 6}, dp::cpu(), 5);
  const dp::tensor<std::int64_t> y = dp::from_vector<std::int64_t>({0, 2});
  nn::manual_seed(3);
  nn::trainer<detached_conv<true>> pooled{detached_conv<true>{}};
  (void)pooled.backward(nn::cross_entropy, x, y);
  CHECK(all_zero(pooled.model().first.weight.grad()));
  CHECK(all_zero(pooled.model().first.bias.grad()));
  CHECK_FALSE(all_zero(pooled.model().head.weight.grad()));
  nn::trainer<detached_conv<false>> convolved{detached_conv<false>{}};
  (void)convolved.backward(nn::cross_entropy, x, y);
  CHECK(all_zero(convolved.model().first.weight.grad()));
  CHECK(all_zero(convolved.model().first.bias.grad()));
  CHECK_FALSE(all_zero(convolved.model().second.weight.grad()));
  // A detached loss reaches no parameter: refused, as a loss that ignores the model is.
  auto detached_loss = [](const auto& out, const auto& target) { return nn::cross_entropy(nn::detach(out), target); };
  CHECK_THROWS_WITH_AS((void)pooled.backward(detached_loss, x, y),
                       doctest::Contains("does not depend on any parameter of the model (or is detached)"),
                       dp::value_error);
}

TEST_CASE("conv2d over no sample has zero gradients, not the last step's") {
  nn::trainer<head_and_side> t{head_and_side{}};
  const auto x = dp::from_vector<double>({1, 2}, {2, 1});
  const auto y = dp::from_vector<double>({0, 0}, {2, 1});
  (void)t.backward(nn::mse_loss, x, dp::from_vector<double>({3, 4}, {2, 1, 1, 1}), y);
  REQUIRE(t.model().side.weight.grad().to_vector()[0] != 0);  // a step that writes them
  (void)t.backward(nn::mse_loss, x, dp::empty<double>({0, 1, 1, 1}), y);
  // The sum over no sample is 0, whatever the weight: so are its gradients (PyTorch: 0 and 0).
  CHECK(t.model().side.weight.grad().to_vector() == std::vector<double>{0});
  CHECK(t.model().side.bias.grad().to_vector() == std::vector<double>{0});
}

namespace {
/// Outputs of conv2d<C, O, K, S, P> on an [2, C, H, W] input that differ from a direct float64
/// convolution (zero padding) by more than 1e-12.
template <dp::index_t C, dp::index_t O, dp::index_t K, dp::index_t S, dp::index_t P>
int direct_conv_mismatches(dp::index_t h, dp::index_t w, std::uint64_t seed) {
  nn::conv2d<C, O, K, S, P, double> conv;
  auto x = dp::randn<double>({2, C, h, w}, dp::cpu(), seed);
  dp::tensor<double> y = conv(x);
  const dp::index_t ho = (h + 2 * P - K) / S + 1, wo = (w + 2 * P - K) / S + 1;
  REQUIRE(y.shape() == dp::shape{2, O, ho, wo});
  auto xv = x.to_vector(), wv = conv.weight.value().to_vector(), bv = conv.bias.value().to_vector(), yv = y.to_vector();
  int bad = 0;
  for (dp::index_t n = 0; n < 2; ++n) {
    for (dp::index_t o = 0; o < O; ++o) {
      for (dp::index_t i = 0; i < ho; ++i) {
        for (dp::index_t j = 0; j < wo; ++j) {
          double s = bv[o];
          for (dp::index_t c = 0; c < C; ++c) {
            for (dp::index_t kh = 0; kh < K; ++kh) {
              for (dp::index_t kw = 0; kw < K; ++kw) {
                const dp::index_t r = i * S - P + kh, q = j * S - P + kw;
                if (r >= 0 && r < h && q >= 0 && q < w) {
                  s += wv[((o * C + c) * K + kh) * K + kw] * xv[((n * C + c) * h + r) * w + q];
                }
              }
            }
          }
          bad += std::fabs(s - yv[((n * O + o) * ho + i) * wo + j]) > 1e-12;
        }
      }
    }
  }
  return bad;
}
}  // namespace

namespace {
struct first_conv {
  nn::conv2d<16, 4, 3> conv;
  auto forward(auto x) const { return conv(x); }
};
}  // namespace

TEST_CASE("a conv2d whose input needs no gradient keeps no buffer for one") {
  // The input's gradient passes through a buffer of the column matrix's size; a first layer has no
  // use for it (at batch 256, 256 channels and 56x56 it would be 7 GB).
  nn::trainer<first_conv> t{first_conv{}};
  const auto x = dp::randn<float>({8, 16, 32, 32}, dp::cpu(), 41);
  const auto y = dp::zeros<float>({8, 4, 30, 30});
  const std::size_t before = dp::memory_usage(dp::cpu()).in_use;
  (void)t.backward(nn::mse_loss, x, y);
  const std::size_t kept = dp::memory_usage(dp::cpu()).in_use - before;
  const std::size_t col = std::size_t{8} * 16 * 9 * 30 * 30 * sizeof(float);  // [N, C*K*K, Ho*Wo]
  CHECK(kept >= col);  // the columns, which the weight's gradient reads
  CHECK(kept < col * 3 / 2);
}

TEST_CASE("conv2d's input gradient, at stride 1 and 2, matches finite differences through the layer before") {
  nn::manual_seed(36);
  dp_test::gradcheck(two_convs<1>{}, nn::mse_loss, dp::randn<double>({2, 2, 4, 5}, dp::cpu(), 37),
                     dp::randn<double>({2, 2}, dp::cpu(), 38));
  dp_test::gradcheck(two_convs<2>{}, nn::mse_loss, dp::randn<double>({2, 2, 4, 5}, dp::cpu(), 39),
                     dp::randn<double>({2, 2}, dp::cpu(), 40));
}

TEST_CASE("conv2d matches a direct float64 convolution for strides 1-3, padding up to half the window") {
  nn::manual_seed(29);
  CHECK(direct_conv_mismatches<2, 3, 3, 1, 1>(5, 6, 30) == 0);
  CHECK(direct_conv_mismatches<1, 2, 5, 1, 2>(1, 1, 31) == 0);  // the window hangs over every side
  CHECK(direct_conv_mismatches<1, 2, 5, 1, 2>(2, 3, 32) == 0);
  CHECK(direct_conv_mismatches<2, 2, 5, 3, 2>(4, 7, 33) == 0);
  CHECK(direct_conv_mismatches<3, 2, 4, 2, 0>(9, 8, 34) == 0);
}

TEST_CASE("max_pool2d propagates NaN as PyTorch does: a window holding one gives NaN") {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  nn::max_pool2d<2> pool;
  auto x = dp::from_vector<float>({1, nan, 3, 0, 2, 2, nan, 9, 7, 1, 0, 0, 9, 9, 4, 4}, {1, 1, 4, 4});
  auto y = pool(x).to_vector();
  CHECK(std::isnan(y[0]));
  CHECK(std::isnan(y[1]));  // the NaN comes before the larger 9 of its window
  CHECK(y[2] == 9.f);
  CHECK(y[3] == 4.f);
}

TEST_CASE("max_pool2d's values and winners follow PyTorch's rule for every window geometry, ties and NaNs") {
  // Values from {0, 1, 2, 3} (many ties: the first maximum wins), NaN at about 1 in 20 (a NaN
  // replaces the current value, so a window's last NaN wins) and -inf at 1 in 40, or every value
  // -inf, against the rule written out, in float and double. Small planes of every size up to
  // 8 x 11, and larger ones: a plane whose output rows take several blocks of the separable kernel
  // (K <= S, no padding), a row of exactly one block, and rows too long for one (the row kernel).
  namespace nd = dp::nn::detail;
  std::mt19937 gen(35);
  int bad = 0, cases = 0, separable = 0;
  std::vector<std::array<dp::index_t, 2>> sizes;
  for (dp::index_t h = 1; h <= 8; ++h) {
    for (dp::index_t w = 1; w <= 11; ++w) {
      sizes.push_back({h, w});
    }
  }
  for (auto hw : {std::array<dp::index_t, 2>{70, 40}, {9, 1023}, {4, 1024}, {3, 2051}}) {
    sizes.push_back(hw);
  }
  auto check = [&]<class T>(std::type_identity<T>, const nd::window_geometry& g, bool all_minus_inf) {
    const dp::index_t k = g.k, s = g.s, p = g.p, h = g.h, w = g.w;
    ++cases;
    separable += nd::maxpool_planes<T>::fits(g);
    std::vector<T> x(static_cast<std::size_t>(2 * 3 * h * w));
    for (auto& v : x) {
      const auto r = all_minus_inf ? 2 : gen() % 40;
      v = r < 2    ? std::numeric_limits<T>::quiet_NaN()
          : r == 2 ? -std::numeric_limits<T>::infinity()
                   : static_cast<T>(gen() % 4);
    }
    std::vector<T> y(static_cast<std::size_t>(2 * 3 * g.ho * g.wo));
    std::vector<std::int64_t> arg(y.size());
    nd::maxpool_forward(dp::cpu(), x.data(), y.data(), arg.data(), g);
    std::vector<T> y_only(y.size());  // inference: no winners kept
    nd::maxpool_forward(dp::cpu(), x.data(), y_only.data(), static_cast<std::int64_t*>(nullptr), g);
    for (dp::index_t plane = 0; plane < 6; ++plane) {
      for (dp::index_t i = 0; i < g.ho; ++i) {
        for (dp::index_t j = 0; j < g.wo; ++j) {
          // The rule: start at the first valid element with -inf; a larger value or a NaN
          // replaces the current one.
          double best = -std::numeric_limits<double>::infinity();
          std::int64_t where = -1;
          for (dp::index_t r = i * s - p; r < i * s - p + k; ++r) {
            for (dp::index_t q = j * s - p; q < j * s - p + k; ++q) {
              if (r < 0 || r >= h || q < 0 || q >= w) {
                continue;
              }
              const double v = x[static_cast<std::size_t>((plane * h + r) * w + q)];
              where = where < 0 ? r * w + q : where;
              if (v > best || std::isnan(v)) {
                best = v;
                where = r * w + q;
              }
            }
          }
          const auto o = static_cast<std::size_t>((plane * g.ho + i) * g.wo + j);
          const bool same = std::isnan(best) ? std::isnan(y[o]) : y[o] == best;
          const bool same_alone = std::isnan(best) ? std::isnan(y_only[o]) : y_only[o] == best;
          bad += !same || !same_alone || arg[o] != where;
        }
      }
    }
  };
  for (auto [k, s, p] : {std::array<dp::index_t, 3>{2, 2, 0},
                         {3, 2, 1},
                         {3, 1, 1},
                         {2, 1, 0},
                         {3, 3, 1},
                         {5, 3, 2},
                         {4, 2, 2},
                         {1, 1, 0},
                         {3, 3, 0},
                         {2, 3, 0},
                         {1, 2, 0},
                         {4, 4, 0}}) {
    for (auto [h, w] : sizes) {
      const auto g = nd::window_geometry::of(dp::shape{2, 3, h, w}, k, s, p);
      if (g.ho > 0 && g.wo > 0) {
        check(std::type_identity<double>{}, g, false);
        check(std::type_identity<float>{}, g, false);
        check(std::type_identity<float>{}, g, h == 5);
      }
    }
  }
  CHECK(cases > 1500);
  CHECK(separable > 500);  // both kernels are tested
  CHECK(cases - separable > 500);
  CHECK(bad == 0);
}

TEST_CASE("col2im at stride 1 sums each input's terms in the general order, bit for bit, past its row tile") {
  // The general rule written out: input (c, h, w) sums the column entries of the outputs whose
  // windows cover it, outputs (oh, ow) from the last to the first. 300 columns: two tiles of 256.
  namespace nd = dp::nn::detail;
  const auto g = nd::window_geometry::of(dp::shape{2, 2, 4, 300}, 5, 1, 2);
  std::mt19937 gen(41);
  std::uniform_real_distribution<float> value(-1.0f, 1.0f);
  std::vector<float> dcol(static_cast<std::size_t>(g.n * g.ckk() * g.hw_out()));
  for (auto& v : dcol) {
    v = std::ldexp(value(gen), static_cast<int>(gen() % 30) - 15);
  }
  for (const bool accumulate : {false, true}) {
    std::vector<float> dx(static_cast<std::size_t>(g.n * g.c * g.h * g.w), 0.5f), want = dx;
    for (dp::index_t row = 0; row < g.n * g.c * g.h; ++row) {
      nd::col2im_fn<float>{dcol.data(), dx.data(), g, accumulate}(row);
    }
    for (dp::index_t n = 0; n < g.n; ++n) {
      for (dp::index_t c = 0; c < g.c; ++c) {
        for (dp::index_t h = 0; h < g.h; ++h) {
          for (dp::index_t w = 0; w < g.w; ++w) {
            float acc = 0.0f;
            for (dp::index_t oh = g.ho - 1; oh >= 0; --oh) {
              for (dp::index_t ow = g.wo - 1; ow >= 0; --ow) {
                const dp::index_t kh = h + g.p - oh, kw = w + g.p - ow;
                if (kh >= 0 && kh < g.k && kw >= 0 && kw < g.k) {
                  acc += dcol[static_cast<std::size_t>(((n * g.c + c) * g.k * g.k + kh * g.k + kw) * g.hw_out() +
                                                       oh * g.wo + ow)];
                }
              }
            }
            float& o = want[static_cast<std::size_t>(((n * g.c + c) * g.h + h) * g.w + w)];
            o = accumulate ? o + acc : acc;
          }
        }
      }
    }
    CHECK(std::memcmp(dx.data(), want.data(), dx.size() * sizeof(float)) == 0);
  }
}

TEST_CASE("conv2d matches a direct float64 convolution") {
  nn::manual_seed(22);
  nn::conv2d<2, 3, 3, 2, 1, double> conv;
  auto x = dp::randn<double>({2, 2, 5, 6}, dp::cpu(), 23);
  dp::tensor<double> y = conv(x);
  REQUIRE(y.shape() == dp::shape{2, 3, 3, 3});
  auto xv = x.to_vector(), wv = conv.weight.value().to_vector(), bv = conv.bias.value().to_vector(), yv = y.to_vector();
  int bad = 0;
  for (int n = 0; n < 2; ++n) {
    for (int o = 0; o < 3; ++o) {
      for (int i = 0; i < 3; ++i) {
        for (int j = 0; j < 3; ++j) {
          double s = bv[o];
          for (int c = 0; c < 2; ++c) {
            for (int kh = 0; kh < 3; ++kh) {
              for (int kw = 0; kw < 3; ++kw) {
                const int h = i * 2 - 1 + kh, w = j * 2 - 1 + kw;
                if (h >= 0 && h < 5 && w >= 0 && w < 6) {
                  s += wv[((o * 2 + c) * 3 + kh) * 3 + kw] * xv[((n * 2 + c) * 5 + h) * 6 + w];
                }
              }
            }
          }
          bad += std::fabs(s - yv[((n * 3 + o) * 3 + i) * 3 + j]) > 1e-12;
        }
      }
    }
  }
  CHECK(bad == 0);
}

TEST_CASE("max_pool2d picks the first maximum and pads with -inf") {
  nn::max_pool2d<2> pool;
  auto x = dp::from_vector<float>({1, 3, 3, 0, 2, 2, 5, 1, 0, 0, 0, 0, 9, 9, 4, 4}, {1, 1, 4, 4});
  dp::tensor<float> y = pool(x);
  CHECK(y.to_vector() == std::vector<float>{3, 5, 9, 4});
  nn::max_pool2d<3, 2, 1> padded;
  dp::tensor<float> z = padded(dp::full<float>({1, 1, 3, 3}, -2.f));
  CHECK(z.to_vector() == std::vector<float>(4, -2.f));
  // Integers have no -inf: windows start from the lowest value (they started from -inf cast to 0,
  // so negative windows gave 0). Every path: block and interior (stride 1, 9 wide), edges (padding).
  nn::max_pool2d<2, 1> overlapping;
  dp::tensor<std::int64_t> i = overlapping(dp::from_vector<std::int64_t>({-5, -3, -2, -7}, {1, 1, 2, 2}));
  CHECK(i.to_vector() == std::vector<std::int64_t>{-2});
  std::vector<std::int64_t> wide(2 * 10);
  for (std::size_t k = 0; k < wide.size(); ++k) {
    wide[k] = -100 - static_cast<std::int64_t>(k);
  }
  dp::tensor<std::int64_t> w = overlapping(dp::from_vector<std::int64_t>(wide, {1, 1, 2, 10}));
  CHECK(w.to_vector() == std::vector<std::int64_t>{-100, -101, -102, -103, -104, -105, -106, -107, -108});
  dp::tensor<std::int64_t> e = padded(dp::full<std::int64_t>({1, 1, 3, 3}, -2));
  CHECK(e.to_vector() == std::vector<std::int64_t>(4, -2));
}

TEST_CASE("a window larger than the padded input is a shape error, not an output of one element") {
  // (H + 2P - K) / S + 1 with H + 2P < K rounds to 1 in C++ when K - H - 2P < S.
  nn::max_pool2d<3, 2> pool;
  CHECK_THROWS_AS((void)pool(dp::zeros<float>({1, 1, 2, 2})), dp::shape_error);
  nn::conv2d<1, 1, 3, 2> conv;
  CHECK_THROWS_AS((void)conv(dp::zeros<float>({1, 1, 2, 2})), dp::shape_error);
  nn::conv2d<1, 1, 3, 2, 1> padded;  // 2 + 2 >= 3: fits
  CHECK(padded(dp::zeros<float>({1, 1, 2, 2})).shape() == dp::shape{1, 1, 1, 1});
  // An empty side: with K = 2P the count would be 1, a window of padding alone (its backward
  // wrote into the empty plane).
  nn::max_pool2d<2, 2, 1> half_padded;
  CHECK_THROWS_WITH_AS((void)half_padded(dp::zeros<float>({1, 1, 0, 3})),
                       doctest::Contains("does not fit shape {1, 1, 0, 3}"), dp::shape_error);
  nn::conv2d<1, 1, 2, 1, 1> half_padded_conv;
  CHECK_THROWS_AS((void)half_padded_conv(dp::zeros<float>({1, 1, 4, 0})), dp::shape_error);
}

TEST_CASE("embedding: gradients match; bad indices are errors") {
  nn::manual_seed(24);
  auto idx = dp::from_vector<std::int64_t>({0, 3, 3, 6, 1});  // index 3 twice: gradients add
  dp_test::gradcheck(model4{}, nn::mse_loss, idx, dp::randn<double>({5, 2}, dp::cpu(), 25));
  nn::embedding<7, 3> e;
  CHECK_THROWS_WITH_AS((void)e(dp::from_vector<std::int64_t>({1, 7})), doctest::Contains("index 7 at position 1"),
                       dp::value_error);
  const dp::tensor<std::int64_t> elsewhere = dp::zeros<std::int64_t>({2}, dp::cpu(1));
  CHECK_THROWS_WITH_AS((void)e(elsewhere), doctest::Contains("the indices are on cpu:1 and the table on cpu:0"),
                       dp::device_error);
}

namespace {
// Each layer that reads its input's memory row by row, fed a transposed view.
struct transposed_logits {
  nn::linear<5, 6, double> fc;
  nn::flatten flat;                                       // a layer whose output is a view, not an expression
  auto forward(auto x) const { return flat(fc(x)).t(); }  // [6, N]: 6 rows of N classes
};
struct conv_of_transposed {
  nn::conv2d<2, 3, 3, 1, 1, double> conv;
  nn::flatten flat;
  nn::linear<3 * 5 * 4, 2, double> fc;
  auto forward(auto x) const { return fc(flat(conv(x.transpose(2, 3)))); }
};
struct pool_of_transposed {
  nn::conv2d<2, 3, 3, 1, 1, double> conv;
  nn::max_pool2d<2, 1, 0> first;  // [N, 3, 4, 6] -> [N, 3, 3, 5]
  nn::max_pool2d<2, 2, 0> second;
  nn::flatten flat;
  nn::linear<3 * 2 * 1, 2, double> fc;
  auto forward(auto x) const { return fc(flat(second(first(conv(x)).transpose(2, 3)))); }
};
struct embedding_of_transposed {
  nn::embedding<7, 3, double> emb;
  nn::linear<3, 2, double> fc;
  auto forward(auto idx) const { return fc(dp::tanh(emb(idx.t()))); }
};
}  // namespace

// A traced transpose is a view; cross_entropy, conv2d, max_pool2d and embedding read their input's
// memory in row-major order, and read the untransposed values (a traced loss 1.85 against the eager
// 1.99) until they copied the view first, as the eager forward does.
TEST_CASE("layers fed a transposed view: the traced loss is the eager one and gradients match") {
  nn::manual_seed(40);
  dp_test::gradcheck(transposed_logits{}, nn::cross_entropy, dp::randn<double>({4, 5}, dp::cpu(), 41),
                     dp::from_vector<std::int64_t>({0, 3, 1, 2, 2, 0}));
  dp_test::gradcheck(conv_of_transposed{}, nn::mse_loss, dp::randn<double>({2, 2, 4, 5}, dp::cpu(), 42),
                     dp::randn<double>({2, 2}, dp::cpu(), 43));
  dp_test::gradcheck(pool_of_transposed{}, nn::mse_loss, dp::randn<double>({2, 2, 4, 6}, dp::cpu(), 44),
                     dp::randn<double>({2, 2}, dp::cpu(), 45));
  dp_test::gradcheck(embedding_of_transposed{}, nn::mse_loss, dp::from_vector<std::int64_t>({0, 3, 3, 6, 1, 2}, {2, 3}),
                     dp::randn<double>({3, 2, 2}, dp::cpu(), 46));
}

TEST_CASE("residual adds its block's output to its input") {
  nn::manual_seed(26);
  using net =
      nn::sequential<nn::linear<4, 5, double>, nn::residual<nn::linear<5, 5, double>>, nn::linear<5, 1, double>>;
  dp_test::gradcheck(net{}, nn::mse_loss, dp::randn<double>({6, 4}, dp::cpu(), 27),
                     dp::randn<double>({6, 1}, dp::cpu(), 28));
  CHECK(nn::parameter_names(net{})[2] == "1.block.weight");
  // A block that names no widths and changes the shape: [3, 8] + [3, 1] broadcast without a word.
  nn::residual<narrowing> r;
  CHECK_THROWS_WITH_AS((void)r(dp::zeros<float>({3, 8})), doctest::Contains("the block maps shape {3, 8} to {3, 1}"),
                       dp::shape_error);
}

TEST_CASE("dropout: scaled mask in training, identity in evaluation, the same mask in backward") {
  nn::dropout drop{0.25f};
  auto x = dp::ones<float>({200, 50});
  dp::tensor<float> ev = drop(x);
  CHECK(dp::sum(ev).item() == doctest::Approx(10000.f));
  dp::tensor<float> tr;
  {
    nn::mode_scope train(true);
    tr = drop(x);
  }
  const auto v = tr.to_vector();
  int zeros = 0;
  bool scaled = true;
  for (float f : v) {
    zeros += f == 0.f;
    scaled = scaled && (f == 0.f || std::fabs(f - 1 / 0.75f) < 1e-6);
  }
  CHECK(scaled);
  CHECK(zeros / 10000.0 == doctest::Approx(0.25).epsilon(0.06));
  // With x = w = 1 the output is the mask (entries 0 or 2 at p = 0.5). mse against 0 is
  // mean(mask^2) = 4 kept / 200, and d/dw_j = (2/200) * 4 * kept_j: backward must see forward's mask.
  nn::trainer<model5> t{model5{}};
  const float loss = t.backward(nn::mse_loss, dp::ones<float>({4, 50}), dp::zeros<float>({4, 50}));
  const auto g = dp::detail::trainer_access::flat_grads(t).to_vector();
  double kept_by_grad = 0;
  for (int j = 0; j < 50; ++j) {
    kept_by_grad += g[static_cast<std::size_t>(j)] * 25.0;
  }
  CHECK(kept_by_grad == doctest::Approx(loss * 50.0).epsilon(1e-5));
  CHECK(loss > 0.5f);
  CHECK(loss < 3.5f);
}

TEST_CASE("one dropout module applied twice in a traced step draws two masks, as outside a trace and in PyTorch") {
  nn::trainer<dropout_twice> t{dropout_twice{}};
  for (int step = 0; step < 2; ++step) {  // the trace, then its replay
    CAPTURE(step);
    // (m1 - m2)^2 is 4 where exactly one mask keeps the entry (probability 1/2), else 0: the mean
    // over 200 entries is 2 +- 0.14. One mask drawn twice made it exactly 0, and the gradient too.
    const double loss = t.backward(nn::mse_loss, dp::ones<float>({4, 50}), dp::zeros<float>({4, 50}));
    CHECK(loss > 1.5);
    CHECK(loss < 2.5);
  }
  nn::mode_scope train(true);  // outside a trace each call draws anew too
  dp::tensor<float> eager = t.model().forward(dp::ones<float>({4, 50}));
  CHECK(dp::sum(dp::square(eager)).item() > 1.5f * 200);
}
