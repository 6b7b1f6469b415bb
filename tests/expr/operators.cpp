#include <atomic>
#include <cmath>
#include <cstdint>
#include <limits>
#include <thread>
#include <vector>

#include <doctest/doctest.h>

#include <dp/dp.hpp>

#include "../support/reference.hpp"

using dp_test::check_close;
using dp_test::host_values;
using dp_test::ref_map;
using dp_test::ref_zip;

TEST_CASE_TEMPLATE("unary functions match float64 on random shapes and views", T, float, double) {
  dp_test::generator g(1);
  for (int trial = 0; trial < 40; ++trial) {
    const dp::shape s = g.random_shape();
    auto x = g.random_tensor<T>(s, -3, 3);
    auto pos = g.random_tensor<T>(s, 0.01, 5);
    const auto rx = host_values(x), rp = host_values(pos);
    check_close<T>(dp::exp(x), ref_map(rx, [](double v) { return std::exp(v); }));
    check_close<T>(dp::log(pos), ref_map(rp, [](double v) { return std::log(v); }));
    check_close<T>(dp::sin(x), ref_map(rx, [](double v) { return std::sin(v); }));
    check_close<T>(dp::cos(x), ref_map(rx, [](double v) { return std::cos(v); }));
    check_close<T>(dp::tanh(x), ref_map(rx, [](double v) { return std::tanh(v); }));
    check_close<T>(dp::sqrt(pos), ref_map(rp, [](double v) { return std::sqrt(v); }));
    check_close<T>(dp::rsqrt(pos), ref_map(rp, [](double v) { return 1 / std::sqrt(v); }));
    check_close<T>(dp::sigmoid(x), ref_map(rx, [](double v) { return 1 / (1 + std::exp(-v)); }));
    check_close<T>(dp::abs(x), ref_map(rx, [](double v) { return std::fabs(v); }));
    check_close<T>(dp::square(x), ref_map(rx, [](double v) { return v * v; }));
    check_close<T>(-x, ref_map(rx, [](double v) { return -v; }));
    check_close<T>(dp::clamp(x, -1, 0.5), ref_map(rx, [](double v) { return std::min(0.5, std::max(-1.0, v)); }));
  }
}

TEST_CASE_TEMPLATE("binary operators broadcast like NumPy and match float64", T, float, double) {
  dp_test::generator g(2);
  for (int trial = 0; trial < 40; ++trial) {
    const dp::shape s = g.random_shape();
    const dp::shape s2 = g.broadcast_partner(s);
    auto a = g.random_tensor<T>(trial % 2 ? s : s2);
    auto b = g.random_tensor<T>(trial % 2 ? s2 : s, 0.5, 2);
    const auto ra = host_values(a), rb = host_values(b);
    check_close<T>(a + b, ref_zip(ra, rb, [](double x, double y) { return x + y; }));
    check_close<T>(a - b, ref_zip(ra, rb, [](double x, double y) { return x - y; }));
    check_close<T>(a * b, ref_zip(ra, rb, [](double x, double y) { return x * y; }));
    check_close<T>(a / b, ref_zip(ra, rb, [](double x, double y) { return x / y; }));
    check_close<T>(dp::pow(b, a), ref_zip(rb, ra, [](double x, double y) { return std::pow(x, y); }), 1e-5);
    check_close<T>(dp::maximum(a, b), ref_zip(ra, rb, [](double x, double y) { return std::max(x, y); }));
    check_close<T>(dp::minimum(a, b), ref_zip(ra, rb, [](double x, double y) { return std::min(x, y); }));
    check_close<bool>(a < b, ref_zip(ra, rb, [](double x, double y) { return double(x < y); }));
    check_close<bool>(a >= b, ref_zip(ra, rb, [](double x, double y) { return double(x >= y); }));
    check_close<bool>(a == a, ref_map(ra, [](double) { return 1.0; }));  // NOLINT(misc-redundant-expression)
    check_close<T>(dp::where(a > b, a, b * 2), ref_zip(ra, rb, [](double x, double y) { return x > y ? x : 2 * y; }));
    check_close<T>(2 * a + 1, ref_map(ra, [](double x) { return 2 * x + 1; }));
    check_close<T>(1 / b, ref_map(rb, [](double x) { return 1 / x; }));
  }
}

TEST_CASE("a long fused expression equals the float64 composition") {
  dp_test::generator g(3);
  for (int trial = 0; trial < 20; ++trial) {
    const dp::shape s = g.random_shape(3, false);
    auto x = g.random_tensor<float>(s), z = g.random_tensor<float>(g.broadcast_partner(s));
    const auto rx = host_values(x), rz = host_values(z);
    dp::tensor<float> y = 2.f * x + dp::sin(z) * dp::exp(-x) - dp::tanh(x * z) / 3.f;
    check_close(
        y,
        ref_zip(rx, rz, [](double a, double b) { return 2 * a + std::sin(b) * std::exp(-a) - std::tanh(a * b) / 3; }),
        1e-5, 1e-5);
  }
}

TEST_CASE("an expression held in auto keeps its operands alive") {
  auto e = dp::arange<float>(4) * 2.f;  // the arange tensor is a temporary
  auto f = e + dp::ones<float>({4});
  dp::tensor<float> r = f;
  CHECK(r.to_vector() == std::vector<float>{1, 3, 5, 7});
}

TEST_CASE("NaN propagates through maximum and minimum; bools mix with numbers") {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  auto a = dp::from_vector<float>({nan, 1, 2});
  auto b = dp::from_vector<float>({0, nan, 3});
  auto mx = dp::tensor<float>(dp::maximum(a, b)).to_vector();
  CHECK(std::isnan(mx[0]));
  CHECK(std::isnan(mx[1]));
  CHECK(mx[2] == 3);
  dp::tensor<float> masked = (b > 0.5f) * 0.5;  // bool * double scalar keeps 0.5
  CHECK(masked.to_vector()[2] == 0.5f);
  dp::tensor<float> mix = (a > 0.f) * a;
  CHECK(mix.to_vector()[1] == 1.f);
}

TEST_CASE("an integer number an integer tensor's type cannot hold is refused, not wrapped") {
  // uint8 * 300 gave 48, clamp(u8, 0, 300) clamped to [0, 44], int8 < 200 meant int8 < -56.
  const auto u8 = dp::from_vector<std::uint8_t>({100, 200});
  const auto i8 = dp::from_vector<std::int8_t>({100, -5});
  CHECK_THROWS_WITH_AS((void)(u8 * 300),
                       doctest::Contains("dp: the number 300 does not fit the tensor's integer elements (0 to 255) and "
                                         "would wrap; convert the tensor to a wider type first"),
                       dp::value_error);
  CHECK_THROWS_WITH_AS((void)dp::clamp(u8, 0, 300), doctest::Contains("the number 300"), dp::value_error);
  CHECK_THROWS_WITH_AS((void)(i8 < 200),
                       doctest::Contains("the number 200 does not fit the tensor's integer "
                                         "elements (-128 to 127)"),
                       dp::value_error);
  CHECK_THROWS_WITH_AS((void)(u8 > -1), doctest::Contains("the number -1 does not fit"), dp::value_error);
  CHECK_THROWS_WITH_AS((void)(dp::from_vector<std::int64_t>({1}) + (std::uint64_t{1} << 63)),
                       doctest::Contains("9223372036854775808"), dp::value_error);
  dp::tensor<std::int32_t> t = dp::zeros<std::int32_t>({2});
  CHECK_THROWS_WITH_AS(t = std::int64_t{1} << 40, doctest::Contains("the number 1099511627776"), dp::value_error);
  // The factories and fill take numbers of other types through the same rule (full<uint8_t>(.., 300)
  // gave 44s, arange<uint8_t>(0, 300) 44 values).
  CHECK_THROWS_WITH_AS((void)dp::full<std::uint8_t>({3}, 300), doctest::Contains("the number 300"), dp::value_error);
  CHECK_THROWS_WITH_AS((void)dp::arange<std::uint8_t>(0, 300), doctest::Contains("the number 300"), dp::value_error);
  CHECK_THROWS_WITH_AS(t.fill(std::int64_t{1} << 40), doctest::Contains("the number 1099511627776"), dp::value_error);
  CHECK_THROWS_WITH_AS((void)(dp::from_vector<std::int64_t>({1}) + std::numeric_limits<std::uint64_t>::max()),
                       doctest::Contains("no 64-bit integer holds it"), dp::value_error);
  CHECK(dp::full<std::uint8_t>({2}, 255).to_vector() == std::vector<std::uint8_t>{255, 255});
  // stop is exclusive: one past the type's end is a bound, not a value.
  CHECK(dp::arange<std::uint8_t>(250, 256, 2).to_vector() == std::vector<std::uint8_t>{250, 252, 254});
  CHECK(dp::arange<std::uint8_t>(251, 256, 2).to_vector() == std::vector<std::uint8_t>{251, 253, 255});
  CHECK(dp::arange<std::int8_t>(-126, -129, -1).to_vector() == std::vector<std::int8_t>{-126, -127, -128});
  CHECK_THROWS_WITH_AS((void)dp::arange<std::uint8_t>(251, 258, 2), doctest::Contains("the number 258"),
                       dp::value_error);                // 257 would be asked for
  CHECK(dp::arange<std::uint8_t>(0, -5).numel() == 0);  // past the other end: no value, as numpy
  // At the edges, and wider tensors, take the number.
  CHECK(dp::tensor<std::uint8_t>(dp::clamp(u8, 0, 255)).to_vector() == std::vector<std::uint8_t>{100, 200});
  CHECK(dp::tensor<bool>(i8 < 127).to_vector() == std::vector<bool>{true, true});
  CHECK(dp::tensor<bool>(i8 > -128).to_vector() == std::vector<bool>{true, true});
  CHECK(dp::tensor<std::int64_t>(dp::cast<std::int64_t>(u8) * 300).to_vector() ==
        std::vector<std::int64_t>{30000, 60000});
  t = -7;
  CHECK(t.to_vector() == std::vector<std::int32_t>{-7, -7});
}

TEST_CASE("shape errors name the operation and both shapes; device errors both devices") {
  auto a = dp::zeros<float>({2, 3}), b = dp::zeros<float>({4});
  CHECK_THROWS_WITH_AS((void)(a * b), doctest::Contains("multiply (*): shapes {2, 3} and {4}"), dp::shape_error);
  CHECK_THROWS_WITH_AS((void)dp::where(a > 0.f, a, b), doctest::Contains("where"), dp::shape_error);
  CHECK_THROWS_AS((void)dp::clamp(a, 1, 0), dp::value_error);
}

TEST_CASE("integer arithmetic wraps modulo 2^bits, as PyTorch's does (defined, not C++'s signed overflow)") {
  constexpr int imax = std::numeric_limits<int>::max(), imin = std::numeric_limits<int>::min();
  const auto b = dp::from_vector<int>({imax, imin});
  CHECK(dp::tensor<int>(b + 1).to_vector() == std::vector<int>{imin, imin + 1});
  CHECK(dp::tensor<int>(b - 1).to_vector() == std::vector<int>{imax - 1, imax});
  CHECK(dp::tensor<int>(-b).to_vector() == std::vector<int>{imin + 1, imin});
  CHECK(dp::tensor<int>(dp::abs(b)).to_vector() == std::vector<int>{imax, imin});
  CHECK(dp::tensor<int>(b * 2).to_vector() == std::vector<int>{-2, 0});
  CHECK(dp::tensor<int>(dp::square(dp::from_vector<int>({65536}))).to_vector() == std::vector<int>{0});
  // uint16 * uint16 is computed in int by C++'s promotion: 65535 * 65535 overflowed it.
  const auto u = dp::from_vector<std::uint16_t>({65535});
  CHECK(dp::tensor<std::uint16_t>(u * u).to_vector() == std::vector<std::uint16_t>{1});
  constexpr std::int64_t lmax = std::numeric_limits<std::int64_t>::max();
  CHECK(dp::sum(dp::from_vector<std::int64_t>({lmax, 1})).item() == std::numeric_limits<std::int64_t>::min());
}

TEST_CASE("clamp with a NaN bound is a value_error: it bounded nothing on that side") {
  const auto x = dp::from_vector<float>({-2.f, 0.5f, 3.f});
  // clamp(x, NaN, 1) gave {-2, 0.5, 1}: the NaN bound was skipped (PyTorch gives NaN everywhere).
  CHECK_THROWS_WITH_AS((void)dp::clamp(x, NAN, 1.f), doctest::Contains("include NaN"), dp::value_error);
  CHECK_THROWS_WITH_AS((void)dp::clamp(x, 0.f, NAN), doctest::Contains("include NaN"), dp::value_error);
  // Infinite bounds leave a side open.
  CHECK(dp::tensor<float>(dp::clamp(x, -INFINITY, 1.f)).to_vector() == std::vector<float>{-2.f, 0.5f, 1.f});
}

TEST_CASE("assigning a float expression to an integer tensor checks the range as dp::cast does") {
  const auto f = dp::from_vector<float>({1.7f, -2.5f, NAN, 3e10f});
  // It converted with static_cast, undefined for NaN and 3e10 (x86 gave INT_MIN for both).
  CHECK_THROWS_WITH_AS(dp::tensor<int>(f * 1.f), doctest::Contains("cast to an integer type of a value that is NaN"),
                       dp::value_error);
  dp::tensor<int> j = dp::zeros<int>({4});
  CHECK_THROWS_AS(j.assign(f), dp::value_error);
  // Values in range truncate toward zero, as dp::cast and C++ do.
  CHECK(dp::tensor<int>(f.slice(0, 0, 2) * 1.f).to_vector() == std::vector<int>{1, -2});
}

TEST_CASE("assigning an integer expression to a narrower integer tensor refuses a value it would wrap") {
  const auto x = dp::from_vector<std::int64_t>({300, -1, 70000});
  // It stored static_cast's wrapped values: {44, 255, 112} as uint8, {300, -1, 4464} as int16.
  CHECK_THROWS_WITH_AS(dp::tensor<std::uint8_t>(x * std::int64_t{1}),
                       doctest::Contains("assignment of an integer value to an integer type that does not hold it"),
                       dp::value_error);
  CHECK_THROWS_AS(dp::tensor<std::int16_t>(x + std::int64_t{0}), dp::value_error);
  dp::tensor<std::int32_t> y = dp::zeros<std::int32_t>({3});
  CHECK_THROWS_AS(y.assign(dp::from_vector<std::int64_t>({1, 2, 4000000000})), dp::value_error);
  // Values the type holds are stored; dp::cast wraps when asked, as C++ and PyTorch's .to() do.
  CHECK(dp::tensor<std::int16_t>(x.slice(0, 0, 2) * std::int64_t{1}).to_vector() == std::vector<std::int16_t>{300, -1});
  y.assign(dp::from_vector<std::int64_t>({-2147483648, 2147483647, 0}));
  CHECK(y.to_vector() == std::vector<std::int32_t>{-2147483647 - 1, 2147483647, 0});
  CHECK(dp::tensor<std::uint8_t>(dp::cast<std::uint8_t>(x)).to_vector() == std::vector<std::uint8_t>{44, 255, 112});
  // A wider type that holds every value needs no check: int32 into int64, uint8 into int16.
  CHECK(dp::tensor<std::int64_t>(y * 1).to_vector()[1] == 2147483647);
}

TEST_CASE("where computes only the branch it picks when a branch may fault, on every layout") {
  const auto a = dp::from_vector<int>({6, 4, 9, 8}), b = dp::from_vector<int>({0, 2, 3, 0});
  // Both branches were computed on the host, and a / b faulted where b is 0, which where() masks.
  CHECK(dp::tensor<int>(dp::where(b != 0, a / b, 0)).to_vector() == std::vector<int>{0, 2, 3, 0});
  CHECK(dp::sum(dp::where(b != 0, a / b, 0)).item() == 5);
  const auto at = a.reshape({2, 2}).transpose(0, 1), bt = b.reshape({2, 2}).transpose(0, 1);  // strided
  CHECK(dp::tensor<int>(dp::where(bt != 0, at / bt, -1)).to_vector() == std::vector<int>{-1, 3, 2, -1});
  const auto f = dp::from_vector<float>({NAN, 2.5f});
  CHECK(dp::tensor<int>(dp::where(f == f, dp::cast<int>(f), 0)).to_vector() == std::vector<int>{0, 2});
  // A fault in the branch picked is still one.
  CHECK_THROWS_WITH_AS((void)dp::tensor<int>(dp::where(b == 0, a / b, 0)),
                       doctest::Contains("integer division by zero"), dp::value_error);
}

TEST_CASE("a float cast to an integer type it does not fit is a dp error, not undefined behaviour") {
  // The cast truncates towards zero; it is defined when the truncated value fits the type.
  using i64 = std::numeric_limits<std::int64_t>;
  const auto fits = dp::from_vector<float>({1.9f, -2.9f, -0.f, 0x1p62f, -0x1p63f});
  CHECK(dp::tensor<std::int64_t>(dp::cast<std::int64_t>(fits)).to_vector() ==
        std::vector<std::int64_t>{1, -2, 0, std::int64_t{1} << 62, i64::min()});
  CHECK(dp::tensor<std::int32_t>(dp::cast<std::int32_t>(dp::from_vector<double>({-2147483648.9, 2147483647.9})))
            .to_vector() == std::vector<std::int32_t>{-2147483647 - 1, 2147483647});
  CHECK(dp::tensor<std::uint8_t>(dp::cast<std::uint8_t>(dp::from_vector<float>({-0.9f, 255.9f}))).to_vector() ==
        std::vector<std::uint8_t>{0, 255});
  const auto refused = doctest::Contains("cast to an integer type of a value that is NaN, infinite or outside");
  const float inf = std::numeric_limits<float>::infinity();
  for (const float bad : {std::numeric_limits<float>::quiet_NaN(), inf, -inf, 0x1p63f, -0x1p64f}) {
    CAPTURE(bad);
    const auto x = dp::from_vector<float>({1.f, bad});
    CHECK_THROWS_WITH_AS((void)dp::tensor<std::int64_t>(dp::cast<std::int64_t>(x)), refused, dp::value_error);
    CHECK_THROWS_WITH_AS((void)dp::sum(dp::cast<std::int64_t>(x)).item(), refused, dp::value_error);
  }
  CHECK_THROWS_WITH_AS((void)dp::tensor<std::int32_t>(dp::cast<std::int32_t>(dp::from_vector<double>({2147483648.0}))),
                       refused, dp::value_error);
  CHECK_THROWS_WITH_AS((void)dp::tensor<std::int32_t>(dp::cast<std::int32_t>(dp::from_vector<double>({-2147483649.0}))),
                       refused, dp::value_error);
  CHECK_THROWS_WITH_AS((void)dp::tensor<std::uint8_t>(dp::cast<std::uint8_t>(dp::from_vector<float>({-1.f}))), refused,
                       dp::value_error);
  CHECK_THROWS_WITH_AS((void)dp::tensor<std::uint8_t>(dp::cast<std::uint8_t>(dp::from_vector<float>({256.f}))), refused,
                       dp::value_error);
  // Raised once: the next cast is fine, and a bool cast of NaN is defined (true).
  CHECK(dp::tensor<std::int64_t>(dp::cast<std::int64_t>(dp::from_vector<float>({3.5f}))).to_vector()[0] == 3);
  CHECK(dp::tensor<bool>(dp::cast<bool>(dp::from_vector<float>({std::numeric_limits<float>::quiet_NaN()})))
            .to_vector()[0]);
}

TEST_CASE("a fault is raised by the thread whose pass met it, wherever the pool ran that part") {
  // A NaN in the last element of a pass long enough to be split over the pool: whichever thread
  // casts it, the caller's check raises it.
  std::vector<float> v(1 << 18, 1.f);
  v.back() = std::numeric_limits<float>::quiet_NaN();
  const auto x = dp::from_vector<float>(v);
  for (int i = 0; i < 200; ++i) {  // the pool's worker takes the last part in some of them
    CHECK_THROWS_AS((void)dp::tensor<std::int64_t>(dp::cast<std::int64_t>(x)), dp::value_error);
  }
  // Another thread's faults are its own: a clean pass here is not refused while that thread holds
  // a fault it has not checked yet, and that thread's check still raises it.
  std::atomic<int> stage{0};
  bool raised_there = false;
  std::thread other([&] {
    dp::detail::flag_fault(nullptr, dp::detail::fault::integer_cast_out_of_range);  // as a pass would
    stage = 1;
    while (stage.load() != 2) {
      std::this_thread::yield();
    }
    try {
      dp::detail::check_expression_faults();
    } catch (const dp::value_error&) {
      raised_there = true;
    }
  });
  while (stage.load() != 1) {
    std::this_thread::yield();
  }
  CHECK_NOTHROW((void)dp::tensor<float>(x * 2.f));
  stage = 2;
  other.join();
  CHECK(raised_there);
}

TEST_CASE("integer division by zero is a dp error, not SIGFPE; INT_MIN / -1 wraps as in PyTorch") {
  const auto a = dp::from_vector<std::int64_t>({7, -7, std::numeric_limits<std::int64_t>::min()});
  const auto zero = dp::from_vector<std::int64_t>({1, 0, 1});
  CHECK_THROWS_WITH_AS((void)dp::tensor<std::int64_t>(a / zero), doctest::Contains("integer division by zero"),
                       dp::value_error);
  CHECK_THROWS_WITH_AS((void)dp::sum(a / zero).item(), doctest::Contains("integer division by zero"), dp::value_error);
  const auto q = dp::tensor<std::int64_t>(a / dp::from_vector<std::int64_t>({2, -1, -1})).to_vector();
  CHECK(q == std::vector<std::int64_t>{3, 7, std::numeric_limits<std::int64_t>::min()});
  CHECK(dp::tensor<std::int64_t>(a / std::int64_t{7}).to_vector()[0] == 1);  // and the next division is fine
}

TEST_CASE("a faulting expression leaves the tensor it reads and writes as it was") {
  // The pass gives 0 where it faults and throws after it: it overwrote x first (7 / 0 left 0).
  const std::vector<std::int32_t> before{7, 8, 9};
  auto x = dp::from_vector<std::int32_t>(before);
  const auto d = dp::from_vector<std::int32_t>({1, 0, 3});
  CHECK_THROWS_WITH_AS(x /= d, doctest::Contains("integer division by zero"), dp::value_error);
  CHECK(x.to_vector() == before);
  CHECK_THROWS_AS(x.assign(x + std::int32_t{1} / d), dp::value_error);
  CHECK(x.to_vector() == before);
  CHECK_THROWS_AS(x += x / d, dp::value_error);
  CHECK(x.to_vector() == before);
  auto i = dp::from_vector<std::int32_t>({1, 2});  // a float-to-integer cast faults the same way
  CHECK_THROWS_AS(i.assign(dp::cast<std::int32_t>(dp::from_vector<float>({1.f, NAN}) + dp::cast<float>(i))),
                  dp::value_error);
  CHECK(i.to_vector() == std::vector<std::int32_t>{1, 2});
  x /= dp::from_vector<std::int32_t>({7, 4, 3});  // a division without a zero still works in place
  CHECK(x.to_vector() == std::vector<std::int32_t>{1, 2, 3});
}

TEST_CASE("abs of -0.0 is +0.0, as fabs and PyTorch give; NaN stays NaN") {
  const auto r = dp::tensor<double>(dp::abs(dp::from_vector<double>({-0.0, 0.0, -2.5, NAN}))).to_vector();
  CHECK_FALSE(std::signbit(r[0]));
  CHECK_FALSE(std::signbit(r[1]));
  CHECK(r[2] == 2.5);
  CHECK(std::isnan(r[3]));
  CHECK_FALSE(std::signbit(dp::tensor<float>(dp::abs(dp::from_vector<float>({-0.f}))).to_vector()[0]));
}

TEST_CASE("a double number past float's range: infinite in an expression, refused as a fill value") {
  const auto one = dp::from_vector<float>({1.f, -1.f});
  // Converting it to float was undefined; IEEE rounding gives infinity from the halfway point to 2^128
  // on (2^128 - 2^103), and the largest float below it.
  const double max = std::numeric_limits<float>::max(), halfway = 0x1p128 - 0x1p103;
  CHECK(dp::tensor<float>(one * 1e300).to_vector() == std::vector<float>{INFINITY, -INFINITY});
  CHECK(dp::tensor<float>(one * halfway).to_vector() == std::vector<float>{INFINITY, -INFINITY});
  CHECK(dp::tensor<float>(one * std::nextafter(halfway, 0.0)).to_vector() ==
        std::vector<float>{static_cast<float>(max), -static_cast<float>(max)});
  CHECK(dp::tensor<float>(one * -1e300).to_vector() == std::vector<float>{-INFINITY, INFINITY});
  // torch.full((2,), 1e300, dtype=torch.float32) is refused: "value cannot be converted to type float without
  // overflow".
  CHECK_THROWS_WITH_AS((void)dp::full<float>({2}, 1e300), doctest::Contains("would become infinite"), dp::value_error);
  auto t = dp::zeros<float>({2});
  CHECK_THROWS_WITH_AS(t.fill(-1e39), doctest::Contains("1e+39"), dp::value_error);
  CHECK(t.to_vector() == std::vector<float>{0.f, 0.f});
  CHECK(dp::full<float>({1}, -std::numeric_limits<double>::infinity()).to_vector()[0] == -INFINITY);  // meant
  CHECK(dp::full<float>({1}, max).to_vector()[0] == std::numeric_limits<float>::max());
}
