#include <cstdint>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include <dp/dp.hpp>

namespace nn = dp::nn;

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
