#include <limits>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include <dp/dp.hpp>

#include "../support/far_axes.hpp"
#include "../support/reference.hpp"

namespace {
dp::tensor<float> iota(const dp::shape& s) { return dp::arange<float>(s.numel()).reshape(s); }
}  // namespace

TEST_CASE("a default tensor is undefined; using it in an expression is a clear error") {
  dp::tensor<float> t;
  CHECK_FALSE(t.defined());
  CHECK_THROWS_WITH_AS((void)(t + 1.f), doctest::Contains("undefined tensor"), dp::value_error);
}

TEST_CASE("copies share storage; clone copies values") {
  auto a = iota({2, 3});
  auto b = a;
  CHECK(b.shares_storage(a));
  b.fill(7.f);
  CHECK(a.to_vector() == std::vector<float>(6, 7.f));
  auto c = a.clone();
  CHECK_FALSE(c.shares_storage(a));
  c.fill(1.f);
  CHECK(a.to_vector()[0] == 7.f);
}

TEST_CASE("assigning an expression writes into the tensor's own memory") {
  auto y = dp::zeros<float>({4});
  const float* before = y.data();
  auto x = iota({4});
  y = x * 2.f;
  CHECK(y.data() == before);
  CHECK(y.to_vector() == std::vector<float>{0, 2, 4, 6});
  // broadcasting into the destination's shape
  y.assign(dp::full<float>({1}, 3.f));
  CHECK(y.to_vector() == std::vector<float>(4, 3.f));
  CHECK_THROWS_AS(y = iota({5}) + 1.f, dp::shape_error);
}

TEST_CASE("slice, select, transpose, permute and broadcast_to are views") {
  auto x = iota({3, 4});
  auto s = x.slice(1, 1, 4, 2);
  CHECK(s.shape() == dp::shape{3, 2});
  CHECK(s.shares_storage(x));
  CHECK(s.to_vector() == std::vector<float>{1, 3, 5, 7, 9, 11});
  CHECK(x.slice(0, -1, 3).to_vector() == std::vector<float>{8, 9, 10, 11});
  CHECK(x[1].to_vector() == std::vector<float>{4, 5, 6, 7});
  CHECK(x.select(1, -1).to_vector() == std::vector<float>{3, 7, 11});
  CHECK(x.t().to_vector() == std::vector<float>{0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11});
  CHECK(dp::arange<float>(3).t().to_vector() == std::vector<float>{0, 1, 2});  // 0-D and 1-D as they are (PyTorch)
  CHECK(dp::full<float>({}, 2.f).t().shape() == dp::shape{});
  CHECK_THROWS_WITH_AS((void)iota({2, 3, 4}).t(), doctest::Contains("t() takes a tensor of at most 2 dimensions"),
                       dp::shape_error);
  auto p = iota({2, 3, 4}).permute({2, 0, 1});
  CHECK(p.shape() == dp::shape{4, 2, 3});
  CHECK(p.select(0, 1).to_vector() == std::vector<float>{1, 5, 9, 13, 17, 21});
  auto b = dp::arange<float>(3).reshape({3, 1}).broadcast_to({3, 2});
  CHECK(b.to_vector() == std::vector<float>{0, 0, 1, 1, 2, 2});
  CHECK_THROWS_AS(x.broadcast_to({4, 4}), dp::shape_error);
  CHECK_THROWS_AS(x.select(0, 3), dp::value_error);
  CHECK_THROWS_AS(x.permute({0, 0}), dp::shape_error);
}

TEST_CASE("a 0-d tensor has no dimension to index, slice or measure: each is a clear error") {
  // x[1] is 0-d; indexing it again (a 1-D tensor indexed as if 2-D) must not read a dimension it
  // no longer has (it read the removed one's extent and stride, and element 3 of 5 came back).
  const auto x = dp::from_vector<float>({0, 1, 2, 3, 4});
  const auto one = x[1];
  CHECK(one.rank() == 0);
  CHECK(one.item() == 1.f);
  CHECK_THROWS_WITH_AS((void)one[2], doctest::Contains("a 0-d tensor has no dimension"), dp::value_error);
  CHECK_THROWS_WITH_AS((void)x[4][4], doctest::Contains("select: a 0-d tensor"), dp::value_error);
  CHECK_THROWS_WITH_AS((void)one.slice(0, 0, 1), doctest::Contains("slice: a 0-d tensor"), dp::value_error);
  CHECK_THROWS_WITH_AS((void)one.size(0), doctest::Contains("size: a 0-d tensor"), dp::value_error);
  // squeeze of its axis 0 or -1 leaves a 0-d tensor as it is (PyTorch's rule); it once made rank -1.
  const auto five = dp::from_vector<float>({5}).select(0, 0).squeeze(0);
  CHECK(five.rank() == 0);
  CHECK(five.item() == 5.f);
  CHECK(one.squeeze(-1).rank() == 0);
  CHECK_THROWS_WITH_AS((void)one.squeeze(1), doctest::Contains("squeeze: axis 1 is out of range"), dp::value_error);
  // What a 0-d tensor does have: its value, a reduction over axis 0 (PyTorch's rule), a transpose.
  CHECK(dp::sum(one, 0).item() == 1.f);
  CHECK(dp::sum(one, -1).rank() == 0);
  CHECK(dp::argmax(one, -1).item() == 0);
  CHECK_THROWS_WITH_AS((void)dp::sum(one, 1), doctest::Contains("(expected -1..0)"), dp::value_error);
  CHECK(one.transpose(0, -1).item() == 1.f);
  // The shape underneath: removing a dimension a shape does not have is an error, not rank -1.
  dp::shape s{7};
  s.erase(0);
  CHECK(s.rank() == 0);
  CHECK_THROWS_AS(s.erase(0), dp::value_error);
}

TEST_CASE("squeeze, unsqueeze, reshape, view and flatten") {
  auto x = iota({2, 1, 3});
  CHECK(x.squeeze(1).shape() == dp::shape{2, 3});
  CHECK_THROWS_AS(x.squeeze(0), dp::shape_error);
  CHECK(x.unsqueeze(0).shape() == dp::shape{1, 2, 1, 3});
  CHECK(x.unsqueeze(-1).shape() == dp::shape{2, 1, 3, 1});
  CHECK(x.reshape({3, -1}).shape() == dp::shape{3, 2});
  CHECK(x.reshape({3, -1}).shares_storage(x));
  CHECK_THROWS_AS(x.reshape({4, -1}), dp::shape_error);
  CHECK_THROWS_AS(x.reshape({-1, -1}), dp::shape_error);
  auto t = iota({2, 3}).t();
  CHECK_FALSE(t.is_contiguous());
  CHECK_THROWS_AS(t.view({6}), dp::shape_error);
  auto r = t.reshape({6});  // copies
  CHECK_FALSE(r.shares_storage(t));
  CHECK(r.to_vector() == std::vector<float>{0, 3, 1, 4, 2, 5});
  CHECK(iota({2, 3, 4}).flatten(1).shape() == dp::shape{2, 12});
  CHECK(iota({2, 3, 4}).flatten().shape() == dp::shape{24});
  // A view without elements is contiguous, whatever its strides: PyTorch's x[:, 0:0].view(0) works.
  const auto empty = iota({2, 3}).slice(1, 0, 0);
  CHECK(empty.is_contiguous());
  CHECK(empty.view({0}).shape() == dp::shape{0});
}

TEST_CASE("assigning a tensor rebinds a named tensor but writes through a temporary view") {
  auto x = dp::zeros<float>({2, 2});
  auto u = dp::ones<float>({2, 2});
  auto named = x;
  named = u;  // rebinds, like Python's `named = u`
  CHECK(named.shares_storage(u));
  CHECK(x.to_vector() == std::vector<float>(4, 0.f));
  x[1] = dp::full<float>({2}, 5.f);  // writes, like Python's `x[1] = ...`
  CHECK(x.to_vector() == std::vector<float>{0, 0, 5, 5});
  x.t() = dp::arange<float>(4).reshape({2, 2});
  CHECK(x.to_vector() == std::vector<float>{0, 2, 1, 3});
}

TEST_CASE("item, to_vector, element types and device moves") {
  CHECK(dp::full<double>({}, 2.5).item() == 2.5);
  CHECK_THROWS_AS(iota({2}).item(), dp::value_error);
  auto i = dp::from_vector<std::int64_t>({1, 2, 3});
  CHECK(i.to<double>().to_vector() == std::vector<double>{1, 2, 3});
  auto m = dp::from_vector<bool>({true, false, true}, {3});
  CHECK(m.to_vector() == std::vector<bool>{true, false, true});
  auto w = iota({3}).to(dp::cpu(1));
  CHECK(w.device() == dp::cpu(1));
  CHECK(w.to_vector() == std::vector<float>{0, 1, 2});
  auto same = w.to(dp::cpu(1));
  CHECK(same.shares_storage(w));
  CHECK_THROWS_AS(dp::from_vector<float>({1, 2, 3}, {2, 2}), dp::shape_error);
  // A shape whose count overflows: its product was taken first (undefined; it wrapped to 0 here).
  const dp::index_t big = dp::index_t{1} << 32;
  CHECK_THROWS_WITH_AS(dp::from_vector<float>({1}, {big, big}),
                       doctest::Contains("from_vector: shape {4294967296, 4294967296} holds more"), dp::shape_error);
  CHECK_THROWS_WITH_AS(dp::from_vector<float>(std::vector<float>{}, {big, big}),
                       doctest::Contains("more elements than a 64-bit index counts"), dp::shape_error);
}

TEST_CASE("tensors on different host workers do not mix in one expression") {
  auto a = dp::ones<float>({2}, dp::cpu(0));
  auto b = dp::ones<float>({2}, dp::cpu(1));
  CHECK_THROWS_WITH_AS((void)(a + b), doctest::Contains("cpu:0 and cpu:1"), dp::device_error);
}

TEST_CASE("static extents check shapes on construction") {
  dp::tensor<float, dp::extents<dp::dyn, 4>> ok = dp::zeros<float>({3, 4});
  CHECK(ok.shape() == dp::shape{3, 4});
  CHECK(decltype(ok)::static_extent(1) == 4);
  CHECK_THROWS_WITH_AS((dp::tensor<float, dp::extents<dp::dyn, 4>>(dp::zeros<float>({3, 5}))),
                       doctest::Contains("extents<dyn, 4>"), dp::shape_error);
  // A refused assignment leaves an undefined tensor undefined (it kept the refused shape {2, 3}).
  dp::tensor<float, dp::extents<dp::dyn, 4>> later;
  CHECK_THROWS_WITH_AS(later = dp::zeros<float>({2, 3}) + 0.f,
                       doctest::Contains("cannot hold a tensor of shape {2, 3}"), dp::shape_error);
  CHECK_FALSE(later.defined());
  later = dp::zeros<float>({2, 4}) + 1.f;
  CHECK(later.shape() == dp::shape{2, 4});
  CHECK_THROWS_AS(later = dp::zeros<float>({2, 3}) + 0.f, dp::error);  // in place: the shapes must agree
  CHECK(later.shape() == dp::shape{2, 4});
}

TEST_CASE("views of random shapes read the same values as a float64 reference") {
  dp_test::generator g(11);
  for (int trial = 0; trial < 50; ++trial) {
    const dp::shape s = g.random_shape();
    auto x = g.random_tensor<float>(s);
    const auto ref = dp_test::host_values(x);
    dp_test::check_close(x.clone(), ref, 0, 0);
    CHECK(x.clone().is_contiguous());
    if (s.rank() >= 2) {
      auto t = x.transpose(0, 1);
      dp_test::ref want{t.shape(), {}};
      dp_test::for_each_coord(t.shape(), [&](const std::vector<dp::index_t>& c) {
        auto c2 = c;
        std::swap(c2[0], c2[1]);
        want.v.push_back(ref.at(c2));
      });
      dp_test::check_close(t.contiguous(), want, 0, 0);
    }
  }
}

TEST_CASE("a shape whose byte count overflows is a shape_error, not a small block written far past its end") {
  const dp::index_t big = dp::index_t{1} << 31;
  CHECK_THROWS_WITH_AS((void)dp::zeros<float>({big, big, big}), doctest::Contains("overflows 64 bits"),
                       dp::shape_error);
  CHECK_THROWS_WITH_AS((void)dp::empty<double>({dp::index_t{1} << 61, 2}), doctest::Contains("overflows 64 bits"),
                       dp::shape_error);
  CHECK(dp::empty<float>({0, big, big}).numel() == 0);  // no elements, and strides up to 2^62 fit
  // The zero after the large extent, too: the byte count was multiplied up to 2^64 before reaching it.
  CHECK(dp::empty<float>({dp::index_t{1} << 62, 0}).numel() == 0);
  CHECK(dp::empty<float>({big, big, 0}).shape() == dp::shape{big, big, 0});
  // No elements, but strides that overflow ({0, 2^40, 2^40}: the extent after dimension 0 is 2^80).
  const dp::index_t huge = dp::index_t{1} << 40;
  CHECK_THROWS_WITH_AS((void)dp::empty<float>({0, huge, huge}),
                       doctest::Contains("shape {0, 1099511627776, 1099511627776} is too large: its non-zero extents "
                                         "multiply to more than 2^63"),
                       dp::shape_error);
  CHECK_THROWS_AS((void)dp::zeros<float>({huge, 0, huge}), dp::shape_error);
}

TEST_CASE("a view's shape whose element count overflows is a shape_error, not a view past the memory") {
  // {2^61 + 1, 16} holds 2^65 + 16 elements, which wraps to 16: it matched the 16 values before.
  const auto t = dp::arange<float>(16);
  const dp::index_t wraps = (dp::index_t{1} << 61) + 1;
  CHECK_THROWS_WITH_AS((void)t.reshape({wraps, 16}), doctest::Contains("dp: reshape: shape {2305843009213693953, 16}"),
                       dp::shape_error);
  CHECK_THROWS_WITH_AS((void)t.view({16, wraps}), doctest::Contains("the product of its extents overflows"),
                       dp::shape_error);
  CHECK_THROWS_AS((void)t.reshape({wraps, -1, 16}), dp::shape_error);
  CHECK_THROWS_AS((void)dp::zeros<float>({0}).reshape({dp::index_t{1} << 62, 4}), dp::shape_error);
  CHECK(dp::zeros<float>({0}).reshape({dp::index_t{1} << 62, 0}).numel() == 0);  // 2^62 is countable
  // broadcast_to checks its target likewise: a negative extent, or a count that wraps to 0.
  const auto one = dp::ones<float>({1});
  CHECK_THROWS_WITH_AS((void)one.broadcast_to({3, -2}), doctest::Contains("dp: broadcast_to: extent -2 in {3, -2}"),
                       dp::shape_error);
  CHECK_THROWS_WITH_AS((void)one.broadcast_to({dp::index_t{1} << 32, dp::index_t{1} << 32}),
                       doctest::Contains("dp: broadcast_to: shape"), dp::shape_error);
  CHECK(one.broadcast_to({3, 0}).numel() == 0);
}

TEST_CASE("permute reads its axes as 64-bit values: one past int's range is out of range, not truncated") {
  const auto t = dp::zeros<float>({2, 3});
  CHECK_THROWS_WITH_AS((void)t.permute({dp::index_t{1} << 32, 1}),
                       doctest::Contains("dp: permute: axis 4294967296 is out of range for a tensor of rank 2"),
                       dp::value_error);
  CHECK(t.permute({-1, 0}).shape() == dp::shape{3, 2});
}

TEST_CASE("every axis argument is 64-bit: 2^32 and -2^32-1 are out of range, not truncated to axes 0 and -1") {
  // As int parameters, 2^32 wrapped to axis 0: size(2^32) of a {4, 5} tensor gave 4, select a {5} view.
  const auto t = dp::zeros<float>({4, 5});
  const auto ones = dp::zeros<float>({1, 1});  // squeeze of truncated axis 0 or -1 succeeded here
  for (const auto& c : dp_test::far_axes) {
    const dp::index_t a = c.value;
    CAPTURE(a);
    const auto out_of_range = [&](const std::string& op) { return dp_test::axis_out_of_range(op, c); };
    CHECK_THROWS_WITH_AS((void)t.size(a), doctest::Contains(out_of_range("size").c_str()), dp::value_error);
    CHECK_THROWS_WITH_AS((void)t.slice(a, 0, 1), doctest::Contains(out_of_range("slice").c_str()), dp::value_error);
    CHECK_THROWS_WITH_AS((void)t.select(a, 1), doctest::Contains(out_of_range("select").c_str()), dp::value_error);
    CHECK_THROWS_WITH_AS((void)t.transpose(a, 1), doctest::Contains(out_of_range("transpose").c_str()),
                         dp::value_error);
    CHECK_THROWS_WITH_AS((void)t.transpose(0, a), doctest::Contains(out_of_range("transpose").c_str()),
                         dp::value_error);
    CHECK_THROWS_WITH_AS((void)ones.squeeze(a), doctest::Contains(out_of_range("squeeze").c_str()), dp::value_error);
    CHECK_THROWS_WITH_AS((void)t.flatten(a, -1), doctest::Contains(out_of_range("flatten").c_str()), dp::value_error);
    CHECK_THROWS_WITH_AS((void)t.flatten(0, a), doctest::Contains(out_of_range("flatten").c_str()), dp::value_error);
    // unsqueeze takes a position 0..rank, one more than the axes.
    CHECK_THROWS_WITH_AS(
        (void)t.unsqueeze(a),
        doctest::Contains(
            ("dp: unsqueeze: position " + c.text + " is out of range for rank 2 (expected -3..2)").c_str()),
        dp::value_error);
  }
  // In range, 64-bit axes work as int ones did.
  CHECK(t.size(dp::index_t{-1}) == 5);
  CHECK(t.select(dp::index_t{1}, 2).shape() == dp::shape{4});
  CHECK(t.transpose(dp::index_t{0}, -1).shape() == dp::shape{5, 4});
  CHECK(t.unsqueeze(dp::index_t{-1}).shape() == dp::shape{4, 5, 1});
}

TEST_CASE("a slice step near INT64_MAX gives one element, not a negative extent") {
  const auto t = dp::arange<float>(10);
  const auto s = t.slice(0, 3, 10, std::numeric_limits<dp::index_t>::max());
  CHECK(s.shape() == dp::shape{1});
  CHECK(s.to_vector() == std::vector<float>{3.f});
  CHECK(t.slice(0, 0, 10, 4).to_vector() == std::vector<float>{0.f, 4.f, 8.f});
  CHECK(t.slice(0, 5, 5, 3).numel() == 0);
}

TEST_CASE("arange counts like numpy.arange, and bounds that give no count are a clear error") {
  CHECK(dp::arange<float>(1, 2, 0.25f).to_vector() == std::vector<float>{1, 1.25f, 1.5f, 1.75f});
  CHECK(dp::arange<double>(3, 0, -1).to_vector() == std::vector<double>{3, 2, 1});
  CHECK(dp::arange<float>(2, 1).numel() == 0);
  const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
  // An infinite bound once became the extent -2^63; a NaN one an empty tensor without a word.
  CHECK_THROWS_WITH_AS(dp::arange<float>(0, inf), doctest::Contains("arange: start 0, stop inf and step 1 give inf"),
                       dp::value_error);
  CHECK_THROWS_WITH_AS(dp::arange<float>(0, nan), doctest::Contains("expected finite bounds"), dp::value_error);
  CHECK_THROWS_WITH_AS(dp::arange<float>(0, -inf), doctest::Contains("give -inf values"), dp::value_error);
  CHECK_THROWS_WITH_AS(dp::arange<float>(inf, 0), doctest::Contains("expected finite bounds"), dp::value_error);
  CHECK_THROWS_WITH_AS(dp::arange<double>(0, 1e300), doctest::Contains("a count below 2^62"), dp::value_error);
  CHECK_THROWS_AS(dp::arange<float>(0, 1, 0), dp::value_error);
  // With bounds of another type, a stop past uint8's end and a zero step gave no value and no error.
  CHECK_THROWS_WITH_AS(dp::arange<std::uint8_t>(0, 256, 0), doctest::Contains("arange: step must not be 0"),
                       dp::value_error);
  CHECK_THROWS_WITH_AS(dp::arange<std::int8_t>(0, 200, 0), doctest::Contains("step must not be 0"), dp::value_error);
}

TEST_CASE("arange of integers counts exactly, at the ends of 64 bits too") {
  using i64 = std::int64_t;
  const i64 max = std::numeric_limits<i64>::max(), min = std::numeric_limits<i64>::min();
  // Counted through a double: 0 values here (100 expected), 1024 past stop and overflowing, none for uint64.
  const auto a = dp::arange<i64>(max - 100, max).to_vector();
  REQUIRE(a.size() == 100);
  CHECK(a.front() == max - 100);
  CHECK(a.back() == max - 1);
  CHECK(dp::arange<i64>(max - 600, max).numel() == 600);
  const auto b = dp::arange<i64>((i64{1} << 62) + 1, (i64{1} << 62) + 1000).to_vector();
  REQUIRE(b.size() == 999);
  CHECK(b.back() == (i64{1} << 62) + 999);
  CHECK(dp::arange<i64>(min, max, max).to_vector() == std::vector<i64>{min, -1, max - 1});  // as numpy
  CHECK(dp::arange<std::uint64_t>(std::uint64_t{1} << 63, (std::uint64_t{1} << 63) + 500).numel() == 500);
  CHECK(dp::arange<i64>(10, 0, -3).to_vector() == std::vector<i64>{10, 7, 4, 1});
  CHECK(dp::arange<std::int8_t>(-128, 127, 127).to_vector() == std::vector<std::int8_t>{-128, -1, 126});
  CHECK(dp::arange<i64>(5, 5).numel() == 0);
  CHECK(dp::arange<i64>(5, 6, -1).numel() == 0);
  CHECK_THROWS_WITH_AS(dp::arange<i64>(min, max), doctest::Contains("give 18446744073709551615 values"),
                       dp::value_error);
}

TEST_CASE("arange(n) makes n values, or says why the element type cannot") {
  // n was converted to the element type first: arange<uint8_t>(256) was empty, arange<float>(2^24 + 1)
  // one short, arange<uint8_t>(-1) 255 values.
  CHECK(dp::arange<std::uint8_t>(256).numel() == 256);
  CHECK(dp::arange<std::uint8_t>(256).to_vector().back() == 255);
  const auto f = dp::arange<float>((1 << 24) + 1);
  CHECK(f.numel() == (1 << 24) + 1);
  CHECK(f.to_vector().back() == 16777216.f);
  CHECK_THROWS_WITH_AS(dp::arange<std::uint8_t>(257),
                       doctest::Contains("arange: n is 257, but the largest value 256 does not fit the element type "
                                         "(at most 255)"),
                       dp::value_error);
  CHECK_THROWS_WITH_AS(dp::arange<std::int8_t>(-1), doctest::Contains("arange: n is -1; expected a count of 0 or more"),
                       dp::value_error);
  CHECK(dp::arange<std::int16_t>(0).numel() == 0);
}
