#include <cmath>
#include <limits>
#include <string>

#include <doctest/doctest.h>

#include <dp/dp.hpp>

#include "../support/far_axes.hpp"
#include "../support/reference.hpp"

using dp_test::check_close;
using dp_test::host_values;

namespace {
/// float64 reduction of `r` over the axes in `mask` (keepdim shape).
dp_test::ref ref_reduce(const dp_test::ref& r, const std::vector<bool>& mask, int kind /*0 sum 1 mean 2 max 3 min*/) {
  dp::shape out = r.shape;
  for (int i = 0; i < out.rank(); ++i) {
    if (mask[i]) {
      out[i] = 1;
    }
  }
  const double init = kind == 2 ? -INFINITY : kind == 3 ? INFINITY : 0.0;
  dp_test::ref o{out, std::vector<double>(static_cast<std::size_t>(out.numel()), init)};
  std::vector<double> count(o.v.size(), 0);
  dp_test::for_each_coord(r.shape, [&](const std::vector<dp::index_t>& c) {
    dp::index_t off = 0;
    for (int i = 0; i < out.rank(); ++i) {
      off = off * out[i] + (mask[i] ? 0 : c[i]);
    }
    const double v = r.at(c);
    double& t = o.v[static_cast<std::size_t>(off)];
    t = kind <= 1 ? t + v : kind == 2 ? std::max(t, v) : std::min(t, v);
    count[static_cast<std::size_t>(off)] += 1;
  });
  if (kind == 1) {
    for (std::size_t i = 0; i < o.v.size(); ++i) {
      o.v[i] = count[i] ? o.v[i] / count[i] : NAN;
    }
  }
  return o;
}
}  // namespace

TEST_CASE_TEMPLATE("sum, mean, max and min over one axis match float64 (keepdim and not)", T, float, double) {
  dp_test::generator g(4);
  for (int trial = 0; trial < 60; ++trial) {
    const dp::shape s = g.random_shape(4, true);
    if (s.rank() == 0) {
      continue;
    }
    auto x = g.random_tensor<T>(s);
    const auto rx = host_values(x);
    const int axis = g.pick(s.rank());
    std::vector<bool> mask(s.rank(), false);
    mask[axis] = true;
    const bool keep = g.pick(2);
    auto want = [&](int kind) {
      auto r = ref_reduce(rx, mask, kind);
      if (!keep) {
        r.shape.erase(axis);
      }
      return r;
    };
    check_close<T>(dp::sum(x, axis, keep), want(0), 1e-5);
    check_close<T>(dp::mean(x * 1, axis - s.rank(), keep), want(1), 1e-5);
    if (s[axis] > 0) {
      check_close<T>(dp::max(x, axis, keep), want(2), 0, 0);
      check_close<T>(dp::min(x, axis, keep), want(3), 0, 0);
    }
  }
}

TEST_CASE("reductions over several axes and over everything, fused with their input") {
  dp_test::generator g(5);
  for (int trial = 0; trial < 30; ++trial) {
    const dp::shape s = g.random_shape(4, false);
    if (s.rank() < 3) {
      continue;
    }
    auto x = g.random_tensor<float>(s);
    const auto rx = host_values(x);
    auto sq = dp_test::ref_map(rx, [](double v) { return v * v; });
    std::vector<bool> mask(s.rank(), false);
    mask[0] = mask[2] = true;
    check_close<float>(dp::sum(x * x, {0, 2}, true), ref_reduce(sq, mask, 0), 1e-5, 1e-5);
    check_close<float>(dp::max(x * x, {0, 2}, true), ref_reduce(sq, mask, 2), 1e-6, 0);  // x * x rounds to float
    check_close<float>(dp::min(x, {2, 0}, true), ref_reduce(rx, mask, 3), 0, 0);
    auto dropped = ref_reduce(rx, mask, 2);  // without keepdim, the reduced axes go
    dropped.shape = dp::shape{};
    for (int i = 0; i < s.rank(); ++i) {
      if (!mask[i]) {
        dropped.shape.push_back(s[i]);
      }
    }
    check_close<float>(dp::max(x, {0, 2}), dropped, 0, 0);
    auto all = ref_reduce(sq, std::vector<bool>(s.rank(), true), 0);
    all.shape = {};
    check_close<float>(dp::sum(x * x), all, 1e-5, 1e-5);
  }
}

TEST_CASE("a whole-tensor sum is accurate over many elements and independent of the thread count") {
  const dp::index_t n = 3'000'001;
  auto x = dp::rand<float>({n}, dp::cpu(), 1);
  double want = 0;
  for (float v : x.to_vector()) {
    want += v;
  }
  dp::set_num_threads(1);
  const float one = dp::sum(x).item();
  dp::set_num_threads(2);
  const float two = dp::sum(x).item();
  CHECK(one == two);
  CHECK(one == doctest::Approx(want).epsilon(1e-6));
  const float mean_sq = dp::mean(x * x).item();
  CHECK(mean_sq == doctest::Approx(1.0 / 3).epsilon(2e-3));
}

TEST_CASE("an empty axis list is refused: PyTorch reduces every axis there, NumPy none") {
  // PyTorch 1.13: torch.ones(2, 3).sum(dim=[]) is tensor(6.); dp returned the input unreduced.
  const auto x = dp::ones<float>({2, 3});
  const std::vector<int> none;
  CHECK_THROWS_WITH_AS((void)dp::sum(x, std::span<const int>(none)),
                       doctest::Contains("dp: sum: an empty axis list reduces every axis in PyTorch and none in NumPy"),
                       dp::value_error);
  CHECK_THROWS_AS((void)dp::max(x, std::span<const int>(none)), dp::value_error);
  CHECK_THROWS_AS((void)dp::mean(x, std::span<const int>(none), true), dp::value_error);
  CHECK(dp::sum(x).item() == 6.f);
}

TEST_CASE("empty reductions: sum is 0, mean is NaN, max is an error") {
  auto e = dp::zeros<float>({0, 3});
  CHECK(dp::sum(e).item() == 0.f);
  CHECK(std::isnan(dp::mean(e).item()));
  CHECK(dp::sum(e, 0).to_vector() == std::vector<float>(3, 0.f));
  CHECK(dp::sum(e, 1).shape() == dp::shape{0});
  CHECK_THROWS_AS((void)dp::max(e), dp::value_error);
  // Along an axis of size 0, max and min have no value even where the result is empty ({0, 0} along
  // 1: PyTorch raises "Expected reduction dim 1 to have non-zero size"); dp returned shape {0}.
  CHECK_THROWS_WITH_AS((void)dp::max(dp::zeros<float>({0, 0}), 1),
                       doctest::Contains("max along an axis of size 0 (dimension 1 of shape {0, 0})"), dp::value_error);
  CHECK_THROWS_AS((void)dp::min(dp::zeros<float>({3, 0}), 1), dp::value_error);
  // Along an axis that has elements, another of size 0 leaves an empty result (PyTorch's too).
  CHECK(dp::max(e, 1).shape() == dp::shape{0});
  CHECK(dp::min(dp::zeros<float>({3, 0}), 0, true).shape() == dp::shape{1, 0});
}

TEST_CASE("integer sums are int64 (uint64 ones uint64); max propagates NaN") {
  auto i = dp::from_vector<int>({1, 2, 3});
  static_assert(std::is_same_v<decltype(dp::sum(i)), dp::tensor<std::int64_t>>);
  CHECK(dp::sum(i).item() == 6);
  // int64 holds no uint64 past 2^63: the sum of {2^63} was -2^63.
  using u64 = std::uint64_t;
  const auto u = dp::from_vector<u64>({u64{1} << 63, 5, 7});
  static_assert(std::is_same_v<decltype(dp::sum(u)), dp::tensor<u64>>);
  CHECK(dp::sum(u).item() == (u64{1} << 63) + 12);
  CHECK(dp::sum(u.reshape({3, 1}), 1).to_vector() == std::vector<u64>{u64{1} << 63, 5, 7});
  CHECK(dp::sum(dp::full<u64>({4}, u64{1} << 63)).item() == 0);  // wraps modulo 2^64, as uint64 addition does
  auto f = dp::from_vector<float>({1, std::numeric_limits<float>::quiet_NaN(), 3});
  CHECK(std::isnan(dp::max(f).item()));
}

TEST_CASE("a sum of broadcast views past 2^63 elements is a shape error, not a sum of no element") {
  // The views take no memory; their count wrapped to 0 (a sum of 0) or below (max said "empty").
  const auto one = dp::full<float>({1, 1}, 1.f);
  const dp::index_t big = dp::index_t{1} << 32;
  CHECK_THROWS_WITH_AS((void)dp::sum(one.broadcast_to({big, 1}) + one.broadcast_to({1, big})).item(),
                       doctest::Contains("whose non-zero extents multiply past what a 64-bit index counts"),
                       dp::shape_error);
}

TEST_CASE("argmax and argmin give the first extreme index, along an axis or overall") {
  auto x = dp::from_vector<float>({1, 5, 5, 0, 2, -1}, {2, 3});
  CHECK(dp::argmax(x).item() == 1);
  CHECK(dp::argmin(x).item() == 5);
  CHECK(dp::argmax(x, 1).to_vector() == std::vector<std::int64_t>{1, 1});
  CHECK(dp::argmax(x, 0).to_vector() == std::vector<std::int64_t>{0, 0, 0});
  CHECK(dp::argmin(x, 1, true).shape() == dp::shape{2, 1});
  CHECK(dp::argmax(x.t(), 0).to_vector() == std::vector<std::int64_t>{1, 1});
  CHECK_THROWS_AS((void)dp::argmax(dp::zeros<float>({0})), dp::value_error);
  // An empty axis has no answer; another axis of size 0 leaves no row, so the answer is empty (as
  // max(x, 1) gives, and PyTorch).
  CHECK_THROWS_WITH_AS((void)dp::argmax(dp::zeros<float>({5, 0}), 1), doctest::Contains("along an axis of size 0"),
                       dp::value_error);
  CHECK(dp::argmax(dp::zeros<float>({0, 5}), 1).shape() == dp::shape{0});
  CHECK(dp::argmin(dp::zeros<float>({0, 5}), 1, true).shape() == dp::shape{0, 1});
}

TEST_CASE("argmax and argmin of long rows, cut into pieces that threads scan, keep the first extreme") {
  // 3 rows of 3 host pieces (a thread's share, 32768 elements) and a tail: ties, NaN and extremes
  // placed across piece boundaries.
  const dp::index_t p = 32768, n = 3 * p + 77;
  const float nan = std::numeric_limits<float>::quiet_NaN();
  std::vector<float> v(static_cast<std::size_t>(3 * n));
  for (std::size_t i = 0; i < v.size(); ++i) {
    v[i] = static_cast<float>(i % 1000) * 1e-3f;
  }
  auto at = [&](dp::index_t row, dp::index_t i) -> float& { return v[static_cast<std::size_t>(row * n + i)]; };
  at(0, p - 1) = 5.f;  // last of piece 0, tied with the first of piece 1 and one in the tail
  at(0, p) = 5.f;
  at(0, n - 1) = 5.f;
  at(0, 2 * p + 5) = -4.f;
  at(0, n - 2) = -4.f;
  at(1, 2 * p + 9) = 7.f;  // a larger value in an earlier piece than a NaN
  at(1, n - 3) = nan;
  at(1, 10) = -1.f;
  at(2, p + 3) = nan;  // two NaNs in two pieces: the first one is the extreme
  at(2, n - 1) = nan;
  for (int threads : {1, 2}) {
    CAPTURE(threads);
    dp::set_num_threads(threads);
    auto x = dp::from_vector<float>(v, {3, n});
    CHECK(dp::argmax(x, 1).to_vector() == std::vector<std::int64_t>{p - 1, n - 3, p + 3});
    CHECK(dp::argmin(x, 1).to_vector() == std::vector<std::int64_t>{2 * p + 5, n - 3, p + 3});
    CHECK(dp::argmax(x.slice(0, 0, 1)).item() == p - 1);
    CHECK(dp::argmax(x).item() == n + n - 3);  // the first NaN, row 1's
    CHECK(dp::argmin(x.slice(0, 2, 3)).item() == p + 3);
    CHECK(dp::argmax(x.t(), 0).to_vector() == std::vector<std::int64_t>{p - 1, n - 3, p + 3});
    // int64 and double take the same pieces.
    CHECK(dp::argmax(dp::cast<std::int64_t>(x.slice(0, 0, 1) * 10.f), 1).to_vector() ==
          std::vector<std::int64_t>{p - 1});
    CHECK(dp::argmin(dp::cast<double>(x.slice(0, 0, 1)), 1).to_vector() == std::vector<std::int64_t>{2 * p + 5});
  }
  dp::set_num_threads(2);
}

TEST_CASE("bad axes are value errors") {
  auto x = dp::zeros<float>({2, 3});
  CHECK_THROWS_AS((void)dp::sum(x, 2), dp::value_error);
  CHECK_THROWS_AS((void)dp::sum(x, {0, 0}), dp::value_error);
}

TEST_CASE("reduction axes are 64-bit: 2^32 and -2^32-1 are out of range, not truncated to axes 0 and -1") {
  const auto x = dp::arange<float>(6).reshape({2, 3});
  for (const auto& c : dp_test::far_axes) {
    const dp::index_t a = c.value;
    CAPTURE(a);
    const auto out_of_range = [&](const std::string& op) { return dp_test::axis_out_of_range(op, c); };
    CHECK_THROWS_WITH_AS((void)dp::sum(x, a), doctest::Contains(out_of_range("sum").c_str()), dp::value_error);
    CHECK_THROWS_WITH_AS((void)dp::mean(x, a), doctest::Contains(out_of_range("mean").c_str()), dp::value_error);
    CHECK_THROWS_WITH_AS((void)dp::max(x * 2.f, a, true), doctest::Contains(out_of_range("max").c_str()),
                         dp::value_error);
    CHECK_THROWS_WITH_AS((void)dp::min(x, a), doctest::Contains(out_of_range("min").c_str()), dp::value_error);
    CHECK_THROWS_WITH_AS((void)dp::argmax(x, a), doctest::Contains(out_of_range("argmax").c_str()), dp::value_error);
    CHECK_THROWS_WITH_AS((void)dp::argmin(x, a), doctest::Contains(out_of_range("argmin").c_str()), dp::value_error);
  }
  // In range, a 64-bit axis reduces as an int one does.
  CHECK(dp::sum(x, dp::index_t{-1}).to_vector() == std::vector<float>{3.f, 12.f});
  CHECK(dp::argmax(x, dp::index_t{0}).to_vector() == std::vector<std::int64_t>{1, 1, 1});
}
