#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <thread>
#include <vector>

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

namespace {
/// float64 C = alpha op(A) op(B) + beta C0 over row-major storage with leading dimensions.
std::vector<double> ref_gemm(bool ta, bool tb, int m, int n, int k, double alpha, const std::vector<float>& a, int lda,
                             const std::vector<float>& b, int ldb, double beta, const std::vector<float>& c, int ldc) {
  std::vector<double> out(c.begin(), c.end());
  for (int i = 0; i < m; ++i) {
    for (int j = 0; j < n; ++j) {
      double s = 0;
      for (int p = 0; p < k; ++p) {
        s += double(ta ? a[p * lda + i] : a[i * lda + p]) * double(tb ? b[j * ldb + p] : b[p * ldb + j]);
      }
      out[i * ldc + j] = alpha * s + beta * double(c[i * ldc + j]);
    }
  }
  return out;
}
}  // namespace

TEST_CASE("host float GEMMs on either side of the oneDNN rule match float64 for every transpose, alpha, beta, ld") {
  // (m, n, k): tiny sides and small products stay with OpenBLAS; the rest go to oneDNN when dp has it.
  const int shapes[][3] = {{64, 128, 128}, {64, 10, 128}, {16, 64, 64}, {128, 64, 64}, {40, 70, 90}, {300, 200, 100}};
  std::mt19937 rng(11);
  std::uniform_real_distribution<float> u(-1, 1);
  for (const auto& s : shapes) {
    const int m = s[0], n = s[1], k = s[2];
    for (int t = 0; t < 4; ++t) {
      const bool ta = t & 1, tb = t & 2;
      const float alpha = t == 3 ? 1.f : 0.5f, beta = t == 0 ? 0.f : (t == 1 ? 1.f : -2.f);
      // Stored shapes, each leading dimension padded by 3 (a view of a wider tensor).
      const int lda = (ta ? m : k) + 3, ldb = (tb ? k : n) + 3, ldc = n + 3;
      std::vector<float> a((ta ? k : m) * lda), b((tb ? n : k) * ldb), c(m * ldc);
      for (auto* v : {&a, &b, &c}) {
        for (auto& x : *v) {
          x = u(rng);
        }
      }
      const auto want = ref_gemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
      dp::detail::mat_ref<const float> ma{a.data(), m, k, lda, ta}, mb{b.data(), k, n, ldb, tb};
      dp::detail::mat_ref<float> mc{c.data(), m, n, ldc, false};
      const auto before = dp::counters();
      dp::detail::gemm(dp::detail::host_target{}, ma, mb, mc, alpha, beta);
      const bool by_onednn = dp::detail::has_onednn && dp::detail::onednn_takes(m, n, k);
      CHECK(dp::counters().onednn_gemms - before.onednn_gemms >= (by_onednn ? 1 : 0));
      if (!by_onednn) {
        CHECK(dp::counters().onednn_gemms == before.onednn_gemms);
      }
      double worst = 0, pad = 0;
      for (int i = 0; i < m; ++i) {
        for (int j = 0; j < ldc; ++j) {
          const double d = std::abs(double(c[i * ldc + j]) - want[i * ldc + j]);
          (j < n ? worst : pad) = std::max(j < n ? worst : pad, d);
        }
      }
      INFO("m=", m, " n=", n, " k=", k, " ta=", ta, " tb=", tb);
      CHECK(worst < 1e-5 * k);
      CHECK(pad == 0);  // the padding between rows is not written
    }
  }
}

TEST_CASE("DP_ONEDNN is 0 or 1 (unset: on); anything else is an error naming the variable and its values") {
  CHECK(dp::detail::onednn_env(nullptr));
  CHECK(dp::detail::onednn_env(""));
  CHECK(dp::detail::onednn_env("1"));
  CHECK_FALSE(dp::detail::onednn_env("0"));
  for (const char* bad : {"yes", "01", " 1", "off"}) {
    CHECK_THROWS_WITH_AS(dp::detail::onednn_env(bad),
                         doctest::Contains("DP_ONEDNN must be 0 (every GEMM through OpenBLAS) or 1"), dp::value_error);
    CHECK_THROWS_WITH_AS(dp::detail::onednn_env(bad), doctest::Contains((std::string("got '") + bad + "'").c_str()),
                         dp::value_error);
  }
}

TEST_CASE("use_onednn(false) sends every GEMM to OpenBLAS, with the same product; use_onednn(true) gives it back") {
  const auto a = dp::randn<float>({64, 128}, dp::cpu(), 11), b = dp::randn<float>({128, 128}, dp::cpu(), 12);
  const auto av = a.to_vector(), bv = b.to_vector();
  std::vector<double> want(64 * 128);
  for (int i = 0; i < 64; ++i) {  // the product in float64 loops
    for (int j = 0; j < 128; ++j) {
      for (int k = 0; k < 128; ++k) {
        want[i * 128 + j] += static_cast<double>(av[i * 128 + k]) * bv[k * 128 + j];
      }
    }
  }
  REQUIRE(dp::onednn_enabled() == dp::detail::has_onednn);
  dp::use_onednn(false);
  CHECK_FALSE(dp::onednn_enabled());
  auto before = dp::counters();
  const auto off = dp::matmul(a, b).to_vector();
  CHECK(dp::counters().onednn_gemms == before.onednn_gemms);
  dp::use_onednn(true);
  CHECK(dp::onednn_enabled() == dp::detail::has_onednn);
  before = dp::counters();
  const auto on = dp::matmul(a, b).to_vector();
  CHECK(dp::counters().onednn_gemms - before.onednn_gemms == (dp::detail::has_onednn ? 1 : 0));
  for (std::size_t i = 0; i < want.size(); ++i) {  // float products of 128 terms against double loops
    REQUIRE(std::fabs(off[i] - want[i]) <= 1e-4 * (1 + std::fabs(want[i])));
    REQUIRE(std::fabs(on[i] - want[i]) <= 1e-4 * (1 + std::fabs(want[i])));
  }
}

TEST_CASE("oneDNN takes float products with every side >= 16 and >= 2^17 multiply-adds; double stays with BLAS") {
  CHECK_FALSE(dp::detail::onednn_takes(64, 10, 128));
  CHECK_FALSE(dp::detail::onednn_takes(32, 32, 32));
  CHECK(dp::detail::onednn_takes(64, 128, 64));
  const auto before = dp::counters();
  (void)dp::matmul(dp::ones<double>({64, 128}), dp::ones<double>({128, 128}));
  CHECK(dp::counters().onednn_gemms == before.onednn_gemms);
  (void)dp::matmul(dp::ones<float>({64, 128}), dp::ones<float>({128, 128}));
  CHECK(dp::counters().onednn_gemms - before.onednn_gemms == (dp::detail::has_onednn ? 1 : 0));
}

#if DP_HAS_ONEDNN
namespace {
/// One product with random operands (leading dimensions padded by 1), its float64 answer, and a check.
struct onednn_problem {
  int m, n, k;
  bool ta, tb;
  float alpha, beta;
  int lda, ldb, ldc;
  std::vector<float> a, b, c0;
  std::vector<double> want;

  onednn_problem(int m_, int n_, int k_, bool ta_, bool tb_, float alpha_, float beta_, unsigned seed)
      : m(m_),
        n(n_),
        k(k_),
        ta(ta_),
        tb(tb_),
        alpha(alpha_),
        beta(beta_),
        lda((ta ? m : k) + 1),
        ldb((tb ? k : n) + 1),
        ldc(n + 1),
        a((ta ? k : m) * lda),
        b((tb ? n : k) * ldb),
        c0(m * ldc) {
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> u(-1, 1);
    for (auto* v : {&a, &b, &c0}) {
      std::generate(v->begin(), v->end(), [&] { return u(rng); });
    }
    want = ref_gemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c0, ldc);
  }
  /// Whether oneDNN computed it on this thread, every element within float rounding of float64.
  bool right_by_onednn() const {
    std::vector<float> c = c0;
    if (!dp::detail::onednn_sgemm(ta, tb, m, n, k, alpha, a.data(), lda, b.data(), ldb, beta, c.data(), ldc)) {
      return false;
    }
    for (int i = 0; i < m; ++i) {
      for (int j = 0; j < ldc; ++j) {
        const double d = std::abs(double(c[i * ldc + j]) - want[i * ldc + j]);
        if (j < n ? d > 1e-5 * k : c[i * ldc + j] != c0[i * ldc + j]) {
          return false;
        }
      }
    }
    return true;
  }
};
}  // namespace

TEST_CASE("oneDNN's products are right on several threads at once, and past the shapes a thread keeps") {
  // Each thread makes its own primitives (and oneDNN shares their kernels): four threads run the
  // same products side by side, plus one of their own, 20 times over.
  const std::vector<onednn_problem> common{{64, 128, 128, false, true, 1.f, 0.f, 1},
                                           {128, 128, 64, true, false, 1.f, 1.f, 2},
                                           {64, 128, 128, false, false, 0.5f, -2.f, 3}};
  std::atomic<int> wrong{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      const onednn_problem own{32 + 16 * t, 64, 96, t % 2 == 1, t >= 2, 1.f, 0.f, 10u + t};
      for (int rep = 0; rep < 20; ++rep) {
        for (const auto* p : {&common[0], &common[1], &common[2], &own}) {
          wrong += p->right_by_onednn() ? 0 : 1;
        }
      }
    });
  }
  for (auto& th : threads) {
    th.join();
  }
  CHECK(wrong == 0);
  // One shape with other constants or storage is another primitive: alpha, beta and each leading
  // dimension are part of what a primitive is made for (one thread, one after another, twice).
  CHECK(common[0].right_by_onednn());
  for (int rep = 0; rep < 2; ++rep) {
    for (const auto& p : {onednn_problem{48, 80, 96, false, true, 1.f, 0.f, 20},
                          {48, 80, 96, false, true, 0.5f, 0.f, 21},
                          {48, 80, 96, false, true, 1.f, 1.f, 22},
                          {48, 80, 96, false, true, 1.f, -2.f, 23}}) {
      CHECK(p.right_by_onednn());
    }
    onednn_problem wider{48, 80, 96, false, true, 1.f, 0.f, 24};  // the same shape, A's rows 5 apart more
    wider.lda += 5;
    wider.a.resize(static_cast<std::size_t>(wider.m) * wider.lda);
    wider.want =
        ref_gemm(false, true, 48, 80, 96, 1.f, wider.a, wider.lda, wider.b, wider.ldb, 0.f, wider.c0, wider.ldc);
    CHECK(wider.right_by_onednn());
  }
  // More shapes than a thread keeps: new ones replace rarely used ones, every product stays right,
  // and a shape replaced is made again.
  const int shapes = static_cast<int>(dp::detail::onednn_thread_gemms::max_shapes) + 6;
  int right = 0;
  for (int s = 0; s < shapes; ++s) {
    right += onednn_problem{16 + s, 32, 64, s % 2 == 0, s % 3 == 0, 1.f, s % 2 ? 1.f : 0.f, 100u + s}.right_by_onednn();
  }
  CHECK(right == shapes);
  for (int s = 0; s < shapes; ++s) {
    right -= onednn_problem{16 + s, 32, 64, s % 2 == 0, s % 3 == 0, 1.f, s % 2 ? 1.f : 0.f, 100u + s}.right_by_onednn();
  }
  CHECK(right == 0);
}

TEST_CASE("oneDNN follows BLAS's rules for zero constants: beta 0 does not read C, alpha 0 does not read A or B") {
  onednn_problem p{64, 128, 128, false, true, 1.f, 0.f, 30};
  std::fill(p.c0.begin(), p.c0.end(), std::numeric_limits<float>::quiet_NaN());
  p.want =
      ref_gemm(false, true, 64, 128, 128, 1.f, p.a, p.lda, p.b, p.ldb, 0.f, std::vector<float>(p.c0.size()), p.ldc);
  std::vector<float> c = p.c0;
  const dp::detail::mat_ref<const float> ma{p.a.data(), 64, 128, p.lda, false}, mb{p.b.data(), 128, 128, p.ldb, true};
  const dp::detail::mat_ref<float> mc{c.data(), 64, 128, p.ldc, false};
  dp::detail::gemm(dp::detail::host_target{}, ma, mb, mc, 1.f, 0.f);
  for (int i = 0; i < 64; ++i) {
    for (int j = 0; j < 128; ++j) {
      REQUIRE(std::abs(double(c[i * p.ldc + j]) - p.want[i * p.ldc + j]) <= 1e-5 * 128);
    }
  }
  // alpha 0: C = beta C, even with an infinity in A (0 * inf would be NaN).
  p.a[0] = std::numeric_limits<float>::infinity();
  std::vector<float> c2(c.size(), 2.f);
  const dp::detail::mat_ref<float> mc2{c2.data(), 64, 128, p.ldc, false};
  dp::detail::gemm(dp::detail::host_target{}, ma, mb, mc2, 0.f, 0.5f);
  int halved = 0;
  for (int i = 0; i < 64; ++i) {
    for (int j = 0; j < 128; ++j) {
      halved += c2[i * p.ldc + j] == 1.f;
    }
  }
  CHECK(halved == 64 * 128);
}
#endif
