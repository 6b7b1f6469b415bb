#include <type_traits>
#include <vector>

#include <doctest/doctest.h>

#include <dp/dp.hpp>

#include "../support/gradcheck.hpp"

namespace nn = dp::nn;

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
struct with_empty_parameter {  // `e` has no elements, so its gradient would start where a's does
  nn::parameter<float> a{dp::from_vector<float>({1.f, 2.f, 3.f})};
  nn::parameter<float> e{dp::zeros<float>({0})};
  auto forward(auto x) const {
    auto h = nn::detail::materialize(x * a);
    return h + dp::sum(e * dp::sum(h));
  }
};
}  // namespace

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
