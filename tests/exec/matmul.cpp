#include <array>

#include <doctest/doctest.h>

#include <dp/dp.hpp>

#include "../support/reference.hpp"

using dp_test::check_close;
using dp_test::host_values;

namespace {
/// float64 batched matmul with broadcast batch dimensions (both operands at least 2-D).
dp_test::ref ref_matmul(const dp_test::ref& a, const dp_test::ref& b) {
  const int ra = a.shape.rank(), rb = b.shape.rank();
  const dp::index_t m = a.shape[ra - 2], k = a.shape[ra - 1], n = b.shape[rb - 1];
  dp::shape ba, bb;
  for (int i = 0; i < ra - 2; ++i) {
    ba.push_back(a.shape[i]);
  }
  for (int i = 0; i < rb - 2; ++i) {
    bb.push_back(b.shape[i]);
  }
  dp::shape batch = dp_test::ref_broadcast(ba, bb);
  dp::shape out = batch;
  out.push_back(m);
  out.push_back(n);
  dp_test::ref o{out, {}};
  // Each batch coordinate picks one matrix of each operand (index 0 along a broadcast dimension);
  // the matrices are row-major in the operands' values. Plain offsets: the sanitizer builds run
  // this at -O0, where a coordinate vector per product took minutes.
  dp_test::for_each_coord(batch, [&](const std::vector<dp::index_t>& c) {
    dp::index_t off_a = 0, off_b = 0;
    for (int i = 0; i < ra - 2; ++i) {
      off_a = off_a * a.shape[i] + (a.shape[i] == 1 ? 0 : c[batch.rank() - (ra - 2) + i]);
    }
    for (int i = 0; i < rb - 2; ++i) {
      off_b = off_b * b.shape[i] + (b.shape[i] == 1 ? 0 : c[batch.rank() - (rb - 2) + i]);
    }
    const double* pa = a.v.data() + off_a * m * k;
    const double* pb = b.v.data() + off_b * k * n;
    for (dp::index_t i = 0; i < m; ++i) {
      for (dp::index_t j = 0; j < n; ++j) {
        double s = 0;
        for (dp::index_t p = 0; p < k; ++p) {
          s += pa[i * k + p] * pb[p * n + j];
        }
        o.v.push_back(s);
      }
    }
  });
  return o;
}
}  // namespace

TEST_CASE_TEMPLATE("2-D matmul of plain and transposed views matches float64", T, float, double) {
  dp_test::generator g(6);
  for (int trial = 0; trial < 30; ++trial) {
    const dp::index_t m = 1 + g.pick(40), k = g.pick(40), n = 1 + g.pick(40);
    auto a = g.pick(2) ? g.random_tensor<T>({m, k}) : g.random_tensor<T>({k, m}).t();
    auto b = g.pick(2) ? g.random_tensor<T>({k, n}) : g.random_tensor<T>({n, k}).t();
    // float accumulates k products of magnitude <= 4 in float: allow k * 4 * eps absolute
    check_close<T>(dp::matmul(a, b), ref_matmul(host_values(a), host_values(b)), 1e-5, 1e-6 * (k + 1) * 4);
  }
}

TEST_CASE("large matmuls split over threads (by rows or by columns) match float64") {
  dp_test::generator g(7);
  auto a = g.random_tensor<float>({300, 257}), b = g.random_tensor<float>({257, 190});
  auto c = g.random_tensor<float>({70, 300}), d = g.random_tensor<float>({300, 900});
  const dp_test::ref ab = ref_matmul(host_values(a), host_values(b)), cd = ref_matmul(host_values(c), host_values(d));
  for (int threads : {1, 2}) {
    dp::set_num_threads(threads);
    check_close(dp::matmul(a, b), ab, 1e-5, 1e-3);
    check_close(dp::matmul(c, d), cd, 1e-5, 1e-3);
  }
}

TEST_CASE("batched matmul broadcasts batch dimensions; 1-D operands follow torch.matmul") {
  dp_test::generator g(8);
  auto a = g.random_tensor<double>({2, 1, 3, 4}), b = g.random_tensor<double>({5, 4, 2});
  auto c = dp::matmul(a, b);
  CHECK(c.shape() == dp::shape{2, 5, 3, 2});
  check_close<double>(c, ref_matmul(host_values(a), host_values(b)), 1e-12, 1e-12);
  auto v = dp::from_vector<double>({1, 2, 3, 4});
  auto m = dp::arange<double>(8).reshape({4, 2});
  CHECK(dp::matmul(v, m).to_vector() == std::vector<double>{40, 50});
  CHECK(dp::matmul(m.t(), v).to_vector() == std::vector<double>{40, 50});
  CHECK(dp::matmul(v, v).item() == 30);
  CHECK(dp::matmul(m.t(), v).shape() == dp::shape{2});
}

TEST_CASE("a batch of products the GEMM does not split is spread over threads: float64's values, one thread's bits") {
  // Each product is too small to split: 40 x 40 x 40 (64,000 multiply-adds), or 64 x 64 x 320
  // (1.3 million, but 64 rows and 64 columns make one block, which ran on the caller's thread one
  // product after another). The batch goes to the threads whole products at a time (a broadcast
  // operand and a transposed one included); every product is computed as on one thread.
  for (const auto& [batch, m, k] : {std::array<dp::index_t, 3>{32, 40, 40}, std::array<dp::index_t, 3>{6, 64, 320}}) {
    CAPTURE(m);
    CAPTURE(k);
    dp_test::generator g(9);
    auto a = g.random_tensor<float>({batch, m, k}), b = g.random_tensor<float>({1, m, k}).transpose(1, 2);
    dp::set_num_threads(1);
    const std::vector<float> one = dp::matmul(a, b).to_vector();
    dp::set_num_threads(2);
    dp::reset_counters();
    const auto c = dp::matmul(a, b);
    CHECK(dp::counters().batch_parts == 2);  // one part per thread
    CHECK(c.shape() == dp::shape{batch, m, m});
    const double tol = 3e-7 * static_cast<double>(k);  // float rounding grows with the sum's length
    check_close(c, ref_matmul(host_values(a), host_values(b)), tol, tol);
    CHECK(c.to_vector() == one);
  }
}

TEST_CASE("matmul shape errors print both shapes") {
  CHECK_THROWS_WITH_AS((void)dp::matmul(dp::zeros<float>({2, 3}), dp::zeros<float>({4, 5})),
                       doctest::Contains("shapes {2, 3} and {4, 5}"), dp::shape_error);
  CHECK_THROWS_AS((void)dp::matmul(dp::zeros<float>({2, 2, 3}), dp::zeros<float>({3, 3, 2})), dp::shape_error);
  // Batch dimensions that do not broadcast: the operands' shapes, not only their batch parts.
  CHECK_THROWS_WITH_AS((void)dp::matmul(dp::zeros<float>({2, 3, 4}), dp::zeros<float>({5, 4, 6})),
                       doctest::Contains("dp: matmul of shapes {2, 3, 4} and {5, 4, 6}: matmul (batch dimensions): "
                                         "shapes {2} and {5} cannot be broadcast together"),
                       dp::shape_error);
}

TEST_CASE("matmul accepts expressions by evaluating them first") {
  auto a = dp::ones<float>({2, 2});
  CHECK(dp::matmul(a * 2.f, a).to_vector() == std::vector<float>(4, 4.f));
}
