#include <doctest/doctest.h>

#include <dp/dp.hpp>

#include "../support/reference.hpp"

TEST_CASE("y = a * x + b * sin(z) is one pass with no allocation and no temporary") {
  const dp::index_t n = 1 << 16;
  auto x = dp::rand<float>({n}, dp::cpu(), 1), z = dp::rand<float>({n}, dp::cpu(), 2);
  auto y = dp::empty<float>({n});
  const float a = 2.f, b = 3.f;
  y = a * x + b * dp::sin(z);  // warm-up
  const auto before = dp::counters();
  y = a * x + b * dp::sin(z);
  const auto after = dp::counters();
  CHECK(after.passes - before.passes == 1);
  CHECK(after.allocations - before.allocations == 0);
  CHECK(after.pool_hits - before.pool_hits == 0);  // not even a pooled temporary
  const auto rx = dp_test::host_values(x), rz = dp_test::host_values(z);
  dp_test::check_close(y, dp_test::ref_zip(rx, rz, [](double p, double q) { return 2 * p + 3 * std::sin(q); }));
}

TEST_CASE("broadcast and strided operands fuse into one pass too") {
  auto m = dp::rand<float>({64, 32}), bias = dp::rand<float>({32, 1}), row = dp::rand<float>({64});
  auto out = dp::empty<float>({32, 64});
  const auto before = dp::counters();
  out = dp::tanh(m.t() + bias) * row - 1.f;
  CHECK(dp::counters().passes - before.passes == 1);
  CHECK(dp::counters().allocations - before.allocations == 0);
}

TEST_CASE("aliasing: x = x.t() + 1 is evaluated correctly through a temporary") {
  auto x = dp::arange<float>(9).reshape({3, 3});
  const auto orig = dp_test::host_values(x);
  x = x.t() + 1.f;
  dp_test::ref want{{3, 3}, {}};
  dp_test::for_each_coord({3, 3},
                          [&](const std::vector<dp::index_t>& c) { want.v.push_back(orig.at({c[1], c[0]}) + 1); });
  dp_test::check_close(x, want, 0, 0);
  // element-for-element aliasing needs no temporary
  auto y = dp::arange<float>(1000);
  y = y * 2.f + y;
  const auto before = dp::counters();
  y = y * 2.f + y;
  CHECK(dp::counters().pool_hits - before.pool_hits == 0);
  CHECK(dp::counters().allocations - before.allocations == 0);
  // a shifted self-read overlaps: still correct
  auto s = dp::arange<float>(6);
  s.slice(0, 1, 6) = s.slice(0, 0, 5) * 1.f;
  CHECK(s.to_vector() == std::vector<float>{0, 0, 1, 2, 3, 4});
}

TEST_CASE("compound assignment and writes through views") {
  auto x = dp::zeros<float>({2, 3});
  x += 1.f;
  x *= dp::arange<float>(3);
  CHECK(x.to_vector() == std::vector<float>{0, 1, 2, 0, 1, 2});
  x.slice(1, 0, 3, 2) = -1.f;  // a strided view
  CHECK(x.to_vector() == std::vector<float>{-1, 1, -1, -1, 1, -1});
  x.t() = dp::arange<float>(6).reshape({3, 2});
  CHECK(x.to_vector() == std::vector<float>{0, 2, 4, 1, 3, 5});
}

TEST_CASE("the iteration planner collapses contiguous dimensions and keeps broadcast ones") {
  std::array<dp::shape, 2> st{dp::shape{12, 4, 1}, dp::shape{12, 4, 1}};
  auto it = dp::detail::make_iteration<2>({2, 3, 4}, st);
  CHECK(it.rank == 1);
  CHECK(it.ext[0] == 24);
  CHECK(it.unit);
  std::array<dp::shape, 2> bc{dp::shape{4, 1}, dp::shape{0, 1}};
  auto it2 = dp::detail::make_iteration<2>({3, 4}, bc);
  CHECK(it2.rank == 2);
  CHECK(it2.unit);
  std::array<dp::shape, 2> tr{dp::shape{3, 1}, dp::shape{1, 3}};
  auto it3 = dp::detail::make_iteration<2>({3, 3}, tr);
  CHECK_FALSE(it3.unit);
}
