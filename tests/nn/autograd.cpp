#include <cmath>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

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

TEST_CASE("the derived backward of every element-wise function matches finite differences") {
  auto x = dp::randn<double>({6, 3}, dp::cpu(), 1);
  auto y = dp::randn<double>({6, 4}, dp::cpu(), 2);
  dp::nn::manual_seed(3);
  dp_test::gradcheck(expression_model{}, nn::mse_loss, x, y);
}

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

namespace {
struct chain {
  nn::parameter<float> w{dp::ones<float>({64})};
  nn::parameter<float> b{dp::zeros<float>({64})};
  auto forward(auto x) const { return dp::tanh(dp::relu(x * w + b) * 2.f) + 1.f; }
};
struct constant_out {
  nn::parameter<float> w{dp::ones<float>({2})};
  auto forward(auto x) const { return x * 1.f; }
};
template <class V>
concept readable = requires(V v) { v.item(); } || requires(V v) { v.to_vector(); } || requires(V v) { v.data(); };
}  // namespace

TEST_CASE("an element-wise chain is one fused pass forward and a fixed number of passes per gradient backward") {
  nn::trainer<chain> t{chain{}};
  auto x = dp::randn<float>({32, 64}, dp::cpu(), 1), y = dp::randn<float>({32, 64}, dp::cpu(), 2);
  (void)t.backward(nn::mse_loss, x, y);  // trace
  const auto before = dp::counters();
  (void)t.backward(nn::mse_loss, x, y);
  const auto passes = dp::counters().passes - before.passes;
  // forward: the fused chain (1), the loss's fused square-and-mean (1);
  // backward: seeding the loss gradient (1), the mean's 0-d view (1), the loss into the prediction (1),
  // then the chain: w and b are broadcast leaves, each evaluated at full shape and summed (2 + 2).
  // The input x needs no gradient. Nothing is evaluated per operator of the chain.
  CHECK(passes == 9);
  CHECK(dp::counters().allocations == before.allocations);
}

namespace {
template <class T>
struct activated_layer {  // relu(x w + b) in float, tanh in double (smooth for finite differences)
  nn::linear<64, 48, T> fc;
  nn::linear<48, 8, T> head;
  auto forward(auto x) const {
    if constexpr (std::is_same_v<T, float>) {
      return head(dp::relu(fc(x)));
    } else {
      return head(dp::tanh(fc(x)));
    }
  }
};
}  // namespace

TEST_CASE("the gradient of a bias added to a product is the product's gradient summed, not a second pass") {
  nn::trainer<activated_layer<float>> t{activated_layer<float>{}};
  auto x = dp::randn<float>({32, 64}, dp::cpu(), 1), y = dp::randn<float>({32, 8}, dp::cpu(), 2);
  (void)t.backward(nn::mse_loss, x, y);  // trace
  const auto before = dp::counters();
  (void)t.backward(nn::mse_loss, x, y);
  const auto passes = dp::counters().passes - before.passes;
  // forward: relu(x w + b) and head's x w + b, one fused pass each (the products are GEMMs), the loss (1);
  // backward: seeding the loss gradient (1), the mean's 0-d view (1), the loss into the prediction (1);
  // head's sum: its gradient into the product (1), summed into the bias from there (1); relu's: the
  // same (1 + 1). Evaluating each bias's gradient again at full shape would add one pass per layer.
  CHECK(passes == 10);
  CHECK(dp::counters().allocations == before.allocations);
  // The values: every parameter against finite differences (the same structure in double).
  auto xd = dp::randn<double>({5, 64}, dp::cpu(), 3), yd = dp::randn<double>({5, 8}, dp::cpu(), 4);
  nn::manual_seed(4);
  dp_test::gradcheck(activated_layer<double>{}, nn::mse_loss, xd, yd);
}

TEST_CASE("a traced value has no readable data, and a loss that ignores the parameters is an error") {
  static_assert(!readable<nn::var<float>>);
  static_assert(readable<dp::tensor<float>>);
  nn::trainer<constant_out> t{constant_out{}};
  CHECK_THROWS_WITH_AS((void)t.backward(nn::mse_loss, dp::ones<float>({3, 2}), dp::ones<float>({3, 2})),
                       doctest::Contains("does not depend on any parameter"), dp::value_error);
}

namespace {
struct float_model {
  nn::parameter<float> w{dp::from_vector<float>({1.f, 2.f, 3.f})};
  auto forward(auto x) const { return x * w; }
};
struct with_empty_parameter {  // `e` has no elements, so its gradient would start where a's does
  nn::parameter<float> a{dp::from_vector<float>({1.f, 2.f, 3.f})};
  nn::parameter<float> e{dp::zeros<float>({0})};
  auto forward(auto x) const {
    auto h = nn::detail::materialize(x * a);
    return h + dp::sum(e * dp::sum(h));
  }
};
}  // namespace

namespace {
struct reads_value_in_matmul {
  nn::parameter<float> w{dp::from_vector<float>({1.f, 0.f, 0.f, 1.f}, {2, 2})};
  nn::parameter<float> b{dp::zeros<float>({2})};
  auto forward(auto x) const { return dp::matmul(x, w.value().t()) + b; }
};
struct reads_value_in_expression {
  nn::parameter<float> w{dp::from_vector<float>({1.f, 2.f})};
  nn::parameter<float> b{dp::zeros<float>({2})};
  auto forward(auto x) const { return x * w.value() + b; }
};
}  // namespace

TEST_CASE("a parameter read through value() in a traced forward is refused, not a constant without gradient") {
  const auto x = dp::ones<float>({1, 2}), y = dp::zeros<float>({1, 2});
  nn::trainer<reads_value_in_matmul> a{reads_value_in_matmul{}};
  CHECK_THROWS_WITH_AS((void)a.backward(nn::mse_loss, x, y),
                       doctest::Contains("use the parameter itself (w, not w.value())"), dp::value_error);
  nn::trainer<reads_value_in_expression> b{reads_value_in_expression{}};
  CHECK_THROWS_WITH_AS((void)b.backward(nn::mse_loss, x, y), doctest::Contains("would get no gradient"),
                       dp::value_error);
  CHECK(b.steps() == 0);
  // Outside a step (evaluation), value() is a plain tensor as ever.
  CHECK(b(x).to_vector() == std::vector<float>{1.f, 2.f});
}

namespace {
struct low_rank {  // LoRA's shape: the adapter's product of two parameters, computed first
  nn::parameter<float> a{dp::from_vector<float>({1.f, 2.f}, {2, 1})};
  nn::parameter<float> b{dp::from_vector<float>({3.f, 4.f}, {1, 2})};
  nn::parameter<float> c{dp::zeros<float>({2})};  // trained as ever: the step itself does not fail
  auto forward(auto x) const { return dp::matmul(x, dp::matmul(a, b)) + c; }
};
struct scaled_by_norm {
  nn::parameter<float> s{dp::from_vector<float>({1.f, 2.f})};
  nn::parameter<float> c{dp::zeros<float>({2})};
  auto forward(auto x) const { return x * dp::sum(dp::square(s)) + c; }
};
struct positional {  // a layer applied to a constant, not to the traced input
  nn::linear<2, 2, float, false> pos;
  nn::parameter<float> c{dp::zeros<float>({2})};
  auto forward(auto x) const { return x * pos(dp::ones<float>({1, 2})) + c; }
};
struct low_rank_from_input {  // the same product, computed from the traced input
  nn::parameter<float> a{dp::from_vector<float>({1.f, 2.f}, {2, 1})};
  nn::parameter<float> b{dp::from_vector<float>({3.f, 4.f}, {1, 2})};
  auto forward(auto x) const { return dp::matmul(dp::matmul(x, a), b); }
};
}  // namespace

TEST_CASE("a value computed from parameters alone in a traced forward is refused, not a stale constant") {
  // Traced once, it would be a constant to every replayed step: no gradient for a and b, and the
  // value of the step it was traced in after the optimizer moved them.
  const auto x = dp::from_vector<float>({1.f, -1.f}, {1, 2}), y = dp::zeros<float>({1, 2});
  nn::trainer<low_rank> lr{low_rank{}};
  CHECK_THROWS_WITH_AS((void)lr.backward(nn::mse_loss, x, y), doctest::Contains("from parameters alone"),
                       dp::value_error);
  CHECK(lr.steps() == 0);
  nn::trainer<scaled_by_norm> sn{scaled_by_norm{}};
  CHECK_THROWS_WITH_AS((void)sn.backward(nn::mse_loss, x, y), doctest::Contains("dp::matmul(dp::matmul(x, A), B)"),
                       dp::value_error);
  nn::trainer<positional> ps{positional{}};
  CHECK_THROWS_WITH_AS((void)ps.backward(nn::mse_loss, x, y), doctest::Contains("from parameters alone"),
                       dp::value_error);
  // Outside a step they are plain values: x (a b) = (1 - 2) * [3, 4].
  CHECK(lr(x).to_vector() == std::vector<float>{-3.f, -4.f});
  // The rewrite the message gives, by hand: x a = -1, out = x a b = [-3, -4], loss = mean(out^2) = 12.5,
  // dL/dout = out, so dL/db = (x a) out = [3, 4] and dL/da = x^T (out . b) = [1, -1] * -25.
  // One SGD step with lr 1 subtracts exactly those gradients.
  nn::trainer<low_rank_from_input> ok{low_rank_from_input{}};
  auto opt = dp::optim::sgd(ok, {.lr = 1.0});
  CHECK(ok.backward(nn::mse_loss, x, y) == doctest::Approx(12.5));
  opt.step();
  CHECK(ok.model().a.value().to_vector() == std::vector<float>{26.f, -23.f});
  CHECK(ok.model().b.value().to_vector() == std::vector<float>{0.f, 0.f});
}

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

TEST_CASE("a parameter without elements takes no gradient from its neighbour: every step's gradient is its own") {
  nn::trainer<with_empty_parameter> t{with_empty_parameter{}};
  const auto x = dp::ones<float>({1, 3}), y = dp::zeros<float>({1, 3});
  for (int step = 0; step < 3; ++step) {  // d/da mean((x a)^2) = 2 a / 3, not summed over steps
    (void)t.backward(nn::mse_loss, x, y);
    const auto g = dp::detail::trainer_access::flat_grads(t).to_vector();
    CHECK(g[0] == doctest::Approx(2.0 / 3.0));
    CHECK(g[1] == doctest::Approx(4.0 / 3.0));
    CHECK(g[2] == doctest::Approx(2.0));
  }
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

namespace {
/// A traced reshape to `target`: {-1, 3, 6148914691236517206} overflows (3 * 6148914691236517206 wraps
/// to 2 modulo 2^64, which divides 4 elements and would pass unchecked), {-2, 2} has a negative extent.
template <bool Huge>
struct reshaped {
  nn::linear<3, 2> fc;
  auto forward(auto x) const {
    const dp::shape target = Huge ? dp::shape{-1, 3, 6148914691236517206} : dp::shape{-2, 2};
    return nn::detail::materialize(fc(x)).reshape(target);
  }
};
template <class F>
std::string shape_error_of(F&& f) {
  try {
    f();
  } catch (const dp::shape_error& e) {
    return e.what();
  }
  return "no shape_error";
}
}  // namespace

TEST_CASE("a traced reshape refuses an overflowing or negative extent with the eager reshape's error") {
  const auto x = dp::ones<float>({2, 3}), y = dp::zeros<float>({2, 2});
  const auto four = dp::zeros<float>({2, 2});  // fc(x)'s shape, reshaped eagerly
  nn::trainer<reshaped<true>> huge{reshaped<true>{}};
  const std::string overflow = shape_error_of([&] { (void)four.reshape({-1, 3, 6148914691236517206}); });
  CHECK(overflow ==
        "dp: reshape: shape {1, 3, 6148914691236517206} holds more elements than a 64-bit index counts (the product "
        "of its extents overflows)");
  CHECK(shape_error_of([&] { (void)huge.backward(nn::mse_loss, x, y); }) == overflow);
  CHECK(shape_error_of([&] { (void)huge(x); }) == overflow);  // eager: tensor::reshape
  CHECK(huge.steps() == 0);
  nn::trainer<reshaped<false>> negative{reshaped<false>{}};
  const std::string refused = shape_error_of([&] { (void)four.reshape({-2, 2}); });
  CHECK(refused == "dp: reshape: extent -2 in {-2, 2} is negative");
  CHECK(shape_error_of([&] { (void)negative.backward(nn::mse_loss, x, y); }) == refused);
}

namespace {
/// A traced forward that passes an axis past int's range: truncated to int it is 0, a valid axis.
template <int Op>
struct far_axis {
  nn::linear<3, 2> fc;
  auto forward(auto x) const {
    constexpr std::int64_t far = std::int64_t{1} << 32;
    auto v = nn::detail::materialize(fc(x));
    if constexpr (Op == 0) {
      return v.transpose(far, 1);
    } else if constexpr (Op == 1) {
      return v.unsqueeze(far).flatten(0, 1);
    } else if constexpr (Op == 2) {
      return v.unsqueeze(0).squeeze(far);
    } else if constexpr (Op == 3) {
      return v.reshape({v.size(far), -1});
    } else if constexpr (Op == 4) {
      return v.flatten(far, -1).reshape({2, 2});
    } else {
      return nn::softmax(v, far);
    }
  }
};
template <int Op>
void check_far_axis() {
  CAPTURE(Op);
  const auto x = dp::ones<float>({2, 3}), y = dp::zeros<float>({2, 2});
  nn::trainer<far_axis<Op>> t{far_axis<Op>{}};
  CHECK_THROWS_WITH_AS((void)t.backward(nn::mse_loss, x, y), doctest::Contains("4294967296 is out of range"),
                       dp::value_error);
  CHECK_THROWS_WITH_AS((void)t(x), doctest::Contains("4294967296 is out of range"), dp::value_error);  // eager
  CHECK(t.steps() == 0);
}
}  // namespace

TEST_CASE("a traced view or softmax refuses an axis past int's range instead of truncating it to a valid one") {
  check_far_axis<0>();
  check_far_axis<1>();
  check_far_axis<2>();
  check_far_axis<3>();
  check_far_axis<4>();
  check_far_axis<5>();
}

namespace {
template <int Rank>
struct transposed {
  nn::parameter<double> w{dp::from_vector<double>({1.0, 2.0, 3.0})};
  auto forward(auto x) const {  // x: [2, 3]
    auto y = x * w;
    if constexpr (Rank == 1) {
      return dp::sum(y, 1, false).t();  // [2]: as it is
    } else {
      return nn::detail::materialize(y).reshape({1, 2, 3}).t();  // refused, as PyTorch's t() of a 3-D tensor
    }
  }
};
}  // namespace

TEST_CASE("a traced t() keeps a 1-D value as it is and refuses more than 2 dimensions, as PyTorch's") {
  // It transposed dimensions 0 and 1 of any value: a 1-D one failed, a 3-D one was silently permuted.
  nn::trainer<transposed<1>> one{transposed<1>{}};
  const auto x = dp::ones<double>({2, 3});
  CHECK(one.backward(nn::mse_loss, x, dp::zeros<double>({2})) == doctest::Approx(36.0));  // (1 + 2 + 3)^2
  nn::trainer<transposed<3>> three{transposed<3>{}};
  CHECK_THROWS_WITH_AS((void)three.backward(nn::mse_loss, x, dp::zeros<double>({3, 2, 1})),
                       doctest::Contains("t() takes a value of at most 2 dimensions, got shape {1, 2, 3}"),
                       dp::shape_error);
}

namespace {
struct zero_width {
  nn::parameter<double> w{dp::zeros<double>({0})};
  nn::parameter<double> b{dp::from_vector<double>({1.0})};
  auto forward(auto x) const {  // x: [2, 0]
    auto h = x * w;             // [2, 0]
    return dp::sum(h, 1, false) + dp::sum(dp::max(h, 0, true)) + dp::sum(dp::min(h, 0, true)) + b;
  }
};
}  // namespace

TEST_CASE("a traced max or min over an axis with elements gives an empty result where another axis is 0") {
  // PyTorch 1.13: torch.zeros(2, 0).amax(0, keepdim=True) has shape (1, 0) and sums to 0. The traced
  // reduction refused any input without elements, where the eager one (and PyTorch) gave this.
  nn::trainer<zero_width> t{zero_width{}};
  CHECK(t.backward(nn::mse_loss, dp::zeros<double>({2, 0}), dp::zeros<double>({2})) == doctest::Approx(1.0));
  CHECK(t.model().b.grad().to_vector() == std::vector<double>{2.0});  // d/db mean((0 + b)^2) = 2b
}
