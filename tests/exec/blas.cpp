#include <doctest/doctest.h>

#include <dp/dp.hpp>

TEST_CASE("gemm on the host accumulates with beta and handles k = 0") {
  std::vector<float> a{1, 2, 3, 4}, b{1, 0, 0, 1}, c{10, 10, 10, 10};
  dp::detail::mat_ref<const float> ma{a.data(), 2, 2, 2, false}, mb{b.data(), 2, 2, 2, false};
  dp::detail::mat_ref<float> mc{c.data(), 2, 2, 2, false};
  dp::detail::gemm(dp::detail::host_target{}, ma, mb, mc, 1.f, 1.f);
  CHECK(c == std::vector<float>{11, 12, 13, 14});
  dp::detail::mat_ref<const float> a0{a.data(), 2, 0, 1, false}, b0{b.data(), 0, 2, 2, false};
  dp::detail::gemm(dp::detail::host_target{}, a0, b0, mc, 1.f, 0.5f);
  CHECK(c == std::vector<float>{5.5f, 6, 6.5f, 7});
}

TEST_CASE("row and column blocks of transposed operands address the right elements") {
  std::vector<float> s{0, 1, 2, 3, 4, 5};  // stored 2x3; op(X) = X^T is 3x2
  dp::detail::mat_ref<const float> x{s.data(), 3, 2, 3, true};
  auto r = dp::detail::row_block(x, 1, 3);
  CHECK(r.data[0] == 1);  // op(X)(1, 0) = X(0, 1)
  auto c = dp::detail::col_block(x, 1, 2);
  CHECK(c.data[0] == 3);  // op(X)(0, 1) = X(1, 0)
}

TEST_CASE("each GEMM is counted") {
  const auto before = dp::counters();
  (void)dp::matmul(dp::ones<float>({8, 8}), dp::ones<float>({8, 8}));
  CHECK(dp::counters().gemms - before.gemms == 1);
}
