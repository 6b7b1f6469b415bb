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

TEST_CASE("a write into a view whose elements share memory (a broadcast) is refused; nothing is written") {
  // PyTorch's rule too: 2^20 values written to one float kept whichever thread's came last.
  auto a = dp::zeros<float>({1});
  auto v = a.broadcast_to({1 << 20});
  CHECK_THROWS_WITH_AS(v = dp::arange<float>(1 << 20) * 1.f,
                       doctest::Contains("dp: assignment: the destination of shape {1048576} has strides {0}: the "
                                         "1048576 elements along dimension 0 share one memory location"),
                       dp::value_error);
  CHECK_THROWS_WITH_AS(v += 1.f, doctest::Contains("share one memory location"), dp::value_error);
  CHECK_THROWS_WITH_AS(v.fill(2.f), doctest::Contains("dp: fill: the destination"), dp::value_error);
  CHECK(a.item() == 0.f);
  // A stride-0 dimension of one element shares nothing: the write goes through.
  auto row = dp::zeros<float>({3});
  auto one = row.reshape({1, 3}).broadcast_to({1, 3});
  one = dp::arange<float>(3).reshape({1, 3}) + 0.f;  // an expression writes (a tensor would rebind `one`)
  CHECK(row.to_vector() == std::vector<float>{0, 1, 2});
  auto empty = dp::zeros<float>({4, 0});  // contiguous strides {0, 1}: no element, nothing shared
  empty.fill(1.f);
  empty += 1.f;
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

TEST_CASE("values broadcast along rows ([N, 1] operands, 0-d tensors) keep the host loop vectorised") {
  // Such a leaf reads along the row with stride 0; the host reads copies of its value instead, in
  // segments of the row (exec/cpu.hpp), so rows shorter, equal and longer than a segment, and
  // passes split over two threads in the middle of a row, must all give the float64 values.
  const int saved = dp::num_threads();
  dp::set_num_threads(2);
  const auto taken = [](const dp::counter_values& before) {
    return dp::counters().broadcast_row_passes - before.broadcast_row_passes;
  };
  for (dp::index_t rows : {1, 5, 70}) {
    for (dp::index_t cols : {3, 17, 511, 512, 513, 1300}) {
      CAPTURE(rows);
      CAPTURE(cols);
      auto x = dp::rand<float>({rows, cols}, dp::cpu(), 1), mu = dp::rand<float>({rows, 1}, dp::cpu(), 2),
           w = dp::rand<float>({cols}, dp::cpu(), 3);
      const auto rx = dp_test::host_values(x), rm = dp_test::host_values(mu), rw = dp_test::host_values(w);
      auto y = dp::empty<float>({rows, cols});
      auto before = dp::counters();
      y = (x - mu) * w + mu;
      CHECK(taken(before) == 1);
      CHECK(dp::counters().passes - before.passes == 1);
      const auto centred = dp_test::ref_zip(rx, rm, [](double a, double m) { return a - m; });
      const auto scaled = dp_test::ref_zip(centred, rw, [](double a, double b) { return a * b; });
      dp_test::check_close(y, dp_test::ref_zip(scaled, rm, [](double a, double m) { return a + m; }));
      // Accumulating: y += x * mu.
      const auto ry = dp_test::host_values(y);
      before = dp::counters();
      y += x * mu;
      CHECK(taken(before) == 1);
      dp_test::check_close(y, dp_test::ref_zip(ry, dp_test::ref_zip(rx, rm, [](double a, double m) { return a * m; }),
                                               [](double a, double b) { return a + b; }));
      // Other element types: double, int64 and a bool mask.
      auto xd = dp::tensor<double>(dp::cast<double>(x)), md = dp::tensor<double>(dp::cast<double>(mu));
      dp::tensor<double> yd = xd / md;
      dp_test::check_close(yd, dp_test::ref_zip(rx, rm, [](double a, double m) { return a / m; }), 1e-6);
      auto xi = dp::tensor<std::int64_t>(dp::cast<std::int64_t>(x * 1000.f)),
           mi = dp::tensor<std::int64_t>(dp::cast<std::int64_t>(mu * 1000.f));
      dp::tensor<std::int64_t> yi = xi - mi;
      const auto rxi = dp_test::host_values(xi), rmi = dp_test::host_values(mi);
      dp_test::check_close(yi, dp_test::ref_zip(rxi, rmi, [](double a, double m) { return a - m; }), 0, 0);
      dp::tensor<float> masked = dp::where(mu > 0.5f, x, 0.f);
      dp_test::check_close(masked, dp_test::ref_zip(rx, rm, [](double a, double m) { return m > 0.5 ? a : 0.0; }));
    }
  }
  // A 0-d tensor over a long row, split between the threads in the middle of a segment.
  auto v = dp::rand<float>({100003}, dp::cpu(), 4), s = dp::full<float>({}, 1.5f);
  auto out = dp::empty<float>({100003});
  auto before = dp::counters();
  out = v * s + 1.f;
  CHECK(taken(before) == 1);
  dp_test::check_close(out, dp_test::ref_map(dp_test::host_values(v), [](double a) { return a * 1.5 + 1; }));
  // Not a broadcast row: a transposed leaf, or an output written with a stride, keep the strided loop.
  auto m = dp::rand<float>({64, 32}, dp::cpu(), 5), bias = dp::rand<float>({32, 1}, dp::cpu(), 6);
  auto mt = dp::empty<float>({32, 64});
  before = dp::counters();
  mt = m.t() + bias;
  CHECK(taken(before) == 0);
  dp_test::check_close(mt, dp_test::ref_zip(dp_test::host_values(dp::tensor<float>(m.t())), dp_test::host_values(bias),
                                            [](double a, double b) { return a + b; }));
  auto wide = dp::zeros<float>({32, 64});
  before = dp::counters();
  wide.t() = m + 2.f;
  CHECK(taken(before) == 0);
  // The broadcast value is a column of the output itself: read before the row is written.
  auto a = dp::rand<float>({6, 700}, dp::cpu(), 7);
  const auto ra = dp_test::host_values(a);
  a = a - a.slice(1, 0, 1);
  dp_test::ref want{{6, 700}, {}};
  dp_test::for_each_coord(
      {6, 700}, [&](const std::vector<dp::index_t>& c) { want.v.push_back(ra.at({c[0], c[1]}) - ra.at({c[0], 0})); });
  dp_test::check_close(a, want, 0, 0);
  dp::set_num_threads(saved);
}
