#include <algorithm>
#include <cmath>
#include <random>
#include <string>
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

TEST_CASE("a product with a size or leading dimension past 32-bit int is a shape_error, not a cut size") {
  // [1, 2^31 + 1] x [2^31 + 1, 1] once gave 0 (OpenBLAS refused its k and left C). The operands are
  // only described: the check comes before any element is read.
  const dp::index_t k = (dp::index_t{1} << 31) + 1;
  float c = 7.f;
  dp::detail::mat_ref<const float> a{nullptr, 1, k, k, false}, b{nullptr, k, 1, 1, false};
  dp::detail::mat_ref<float> mc{&c, 1, 1, 1, false};
  CHECK_THROWS_WITH_AS(
      dp::detail::gemm(dp::cpu(), a, b, mc, 1.f, 0.f),
      doctest::Contains("dp: matrix product of [1, 2147483649] and [2147483649, 1] (leading "
                        "dimensions 2147483649, 1, 1): a size or leading dimension exceeds 2147483647"),
      dp::shape_error);
  dp::detail::mat_ref<const float> a1{nullptr, 1, 1, 1, false}, b1{nullptr, 1, 1, k, false};  // a wide stride
  CHECK_THROWS_AS(dp::detail::gemm(dp::cpu(), a1, b1, mc, 1.f, 0.f), dp::shape_error);
  CHECK(c == 7.f);
}

TEST_CASE("an empty product is empty whatever its inner size, as in PyTorch (no BLAS call, no size check)") {
  // [0, 2^31 + 1] x [2^31 + 1, 0] holds no element: it was refused as past 32-bit int.
  const dp::index_t k = (dp::index_t{1} << 31) + 1;
  const auto c = dp::matmul(dp::zeros<float>({0, k}), dp::zeros<float>({k, 0}));
  CHECK(c.shape() == dp::shape{0, 0});
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

namespace {
/// Sets whether dp treats OpenBLAS's kernels as generic (exec/openblas.hpp) for a scope.
class generic_openblas {
 public:
  explicit generic_openblas(bool generic) : saved_(dp::detail::openblas_generic_switch().exchange(generic)) {}
  generic_openblas(const generic_openblas&) = delete;
  generic_openblas& operator=(const generic_openblas&) = delete;
  ~generic_openblas() { dp::detail::openblas_generic_switch().store(saved_); }

 private:
  bool saved_;
};
}  // namespace

TEST_CASE(
    "host float GEMMs on every side of the LIBXSMM and oneDNN rules match float64 for every transpose, "
    "alpha, beta, ld, with OpenBLAS's kernels fit for the CPU or generic") {
  // (m, n, k): small products with alpha 1, beta 0 or 1 and B not transposed go to LIBXSMM, the other
  // large enough ones to oneDNN (when dp has them); tiny sides and the rest stay with OpenBLAS, unless
  // OpenBLAS runs its generic kernels: then LIBXSMM takes the narrow x W^T through a copy of W, and
  // oneDNN every other product LIBXSMM does not.
  const int shapes[][3] = {{64, 128, 128}, {64, 10, 128},   {16, 64, 64},  {128, 64, 64},
                           {40, 70, 90},   {300, 200, 100}, {10, 256, 64}, {256, 64, 64}};
  const int saved_threads = dp::num_threads();
  dp::set_num_threads(2);  // a product of 2^20 multiply-adds or more is split in two parts
  const float scalars[][2] = {{1.f, 0.f}, {1.f, 1.f}, {0.5f, -2.f}, {1.f, 0.5f}};  // (alpha, beta)
  std::mt19937 rng(11);
  std::uniform_real_distribution<float> u(-1, 1);
  for (const bool generic : {false, true}) {
    const generic_openblas scope(generic);
    for (const auto& s : shapes) {
      const int m = s[0], n = s[1], k = s[2];
      for (int t = 0; t < 16; ++t) {
        const bool ta = t & 1, tb = t & 2;
        const float alpha = scalars[t / 4][0], beta = scalars[t / 4][1];
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
        const auto after = dp::counters();
        const bool by_libxsmm =
            dp::detail::has_libxsmm && (dp::detail::libxsmm_takes(tb, m, n, k, alpha, beta) ||
                                        (generic && tb && dp::detail::libxsmm_takes_transposed(m, n, k, alpha, beta)));
        const bool by_onednn = !by_libxsmm && dp::detail::has_onednn && (generic || dp::detail::onednn_takes(m, n, k));
        const auto libxsmm_calls = after.libxsmm_gemms - before.libxsmm_gemms,
                   onednn_calls = after.onednn_gemms - before.onednn_gemms,
                   openblas_calls = after.openblas_gemms - before.openblas_gemms;
        INFO("m=", m, " n=", n, " k=", k, " ta=", ta, " tb=", tb, " alpha=", alpha, " beta=", beta,
             " generic OpenBLAS=", generic);
        // A part per gemm_parallel_macs multiply-adds, at most one per thread: one call below twice that.
        if (dp::index_t{m} * n * k < 2 * dp::detail::gemm_parallel_macs) {  // one call: the rule decides
          CHECK(libxsmm_calls == (by_libxsmm ? 1 : 0));
          CHECK(onednn_calls == (by_onednn ? 1 : 0));
          CHECK(openblas_calls == (by_libxsmm || by_onednn ? 0 : 1));
        } else {  // split over the two threads: each part is decided by its own shape
          CHECK(libxsmm_calls + onednn_calls + openblas_calls == 2);
          if (generic && dp::detail::has_onednn) {
            CHECK(openblas_calls == 0);  // no part reaches the generic kernels
          }
        }
        double worst = 0, pad = 0;
        for (int i = 0; i < m; ++i) {
          for (int j = 0; j < ldc; ++j) {
            const double d = std::abs(double(c[i * ldc + j]) - want[i * ldc + j]);
            (j < n ? worst : pad) = std::max(j < n ? worst : pad, d);
          }
        }
        CHECK(worst < 1e-5 * k);
        CHECK(pad == 0);  // the padding between rows is not written
      }
    }
  }
  dp::set_num_threads(saved_threads);
}

TEST_CASE("LIBXSMM takes small float products with alpha 1, beta 0 or 1 and B not transposed") {
  CHECK(dp::detail::libxsmm_takes(false, 64, 256, 10, 1.f, 0.f));       // a linear layer's input gradient (NN)
  CHECK(dp::detail::libxsmm_takes(false, 256, 64, 64, 1.f, 1.f));       // its weight gradient (TN), accumulated
  CHECK_FALSE(dp::detail::libxsmm_takes(true, 64, 256, 64, 1.f, 0.f));  // its forward (NT): oneDNN's
  CHECK_FALSE(dp::detail::libxsmm_takes(false, 64, 64, 64, 0.5f, 0.f));
  CHECK_FALSE(dp::detail::libxsmm_takes(false, 64, 64, 64, 1.f, -1.f));
  CHECK(dp::detail::libxsmm_takes(false, 128, 128, 128, 1.f, 0.f));        // 2^21 multiply-adds
  CHECK_FALSE(dp::detail::libxsmm_takes(false, 256, 512, 512, 1.f, 0.f));  // large: oneDNN's
  // Its kernels hold operand offsets in 32 bits: a narrow view of a very wide matrix goes elsewhere.
  CHECK(dp::detail::libxsmm_addressable(64, 10, 600, 600, 10, 10));
  CHECK_FALSE(dp::detail::libxsmm_addressable(64, 10, 600, 1'000'000, 10, 10));
  CHECK_FALSE(dp::detail::libxsmm_addressable(64, 10, 600, 600, 10, 1 << 22));
  const auto before = dp::counters();
  (void)dp::matmul(dp::ones<double>({64, 128}), dp::ones<double>({128, 10}));
  CHECK(dp::counters().libxsmm_gemms == before.libxsmm_gemms);  // double stays with BLAS
  (void)dp::matmul(dp::ones<float>({64, 128}), dp::ones<float>({128, 10}));
  CHECK(dp::counters().libxsmm_gemms - before.libxsmm_gemms == (dp::detail::has_libxsmm ? 1 : 0));
}

TEST_CASE("DP_ONEDNN is 0 or 1 (unset: on); anything else is an error naming the variable and its values") {
  CHECK(dp::detail::onednn_env(nullptr));
  CHECK(dp::detail::onednn_env(""));
  CHECK(dp::detail::onednn_env("1"));
  CHECK_FALSE(dp::detail::onednn_env("0"));
  for (const char* bad : {"yes", "01", " 1", "off"}) {
    CHECK_THROWS_WITH_AS(dp::detail::onednn_env(bad),
                         doctest::Contains("DP_ONEDNN must be 0 (no GEMM through oneDNN) or 1"), dp::value_error);
    CHECK_THROWS_WITH_AS(dp::detail::onednn_env(bad), doctest::Contains((std::string("got '") + bad + "'").c_str()),
                         dp::value_error);
  }
}

TEST_CASE(
    "use_onednn(false) sends oneDNN's GEMMs to OpenBLAS, with the same product; use_onednn(true) gives them "
    "back") {
  // A linear layer's forward, x W^T: oneDNN's shape (LIBXSMM does not take a transposed B).
  const auto a = dp::randn<float>({64, 128}, dp::cpu(), 11), w = dp::randn<float>({128, 128}, dp::cpu(), 12);
  const auto b = w.t();
  const auto av = a.to_vector(), wv = w.to_vector();
  std::vector<double> want(64 * 128);
  for (int i = 0; i < 64; ++i) {  // the product in float64 loops
    for (int j = 0; j < 128; ++j) {
      for (int k = 0; k < 128; ++k) {
        want[i * 128 + j] += static_cast<double>(av[i * 128 + k]) * wv[j * 128 + k];
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
  (void)dp::matmul(dp::ones<float>({64, 128}), dp::ones<float>({128, 128}).t());  // NT: not LIBXSMM's
  CHECK(dp::counters().onednn_gemms - before.onednn_gemms == (dp::detail::has_onednn ? 1 : 0));
}

TEST_CASE(
    "OpenBLAS's kernels are generic when they lack AVX2 and FMA on a CPU that has both, unless OPENBLAS_CORETYPE "
    "chose them") {
  using dp::detail::openblas_core_generic;
  // A CPU model newer than the library: its generic x86-64 kernels.
  CHECK(openblas_core_generic("Prescott", true, false));
  CHECK(openblas_core_generic("Nehalem", true, false));
  CHECK(openblas_core_generic("Sandybridge", true, false));  // AVX without FMA
  CHECK(openblas_core_generic("PRESCOTT", true, false));     // a library built for one target names it so
  for (const char* fast : {"Haswell", "Zen", "Excavator", "SkylakeX", "Cooperlake", "SapphireRapids", "HASWELL",
                           "SKYLAKEX", "a name it may give a new CPU"}) {
    CHECK_FALSE(openblas_core_generic(fast, true, false));
  }
  CHECK_FALSE(openblas_core_generic("Prescott", false, false));  // the CPU has nothing faster
  CHECK_FALSE(openblas_core_generic("Prescott", true, true));    // the user's choice
  CHECK_FALSE(openblas_core_generic("", true, false));           // another CBLAS library
  CHECK_FALSE(openblas_core_generic("Prescot", true, false));
}

TEST_CASE(
    "products that would reach generic OpenBLAS kernels go to LIBXSMM (a narrow x W^T, through a copy) or oneDNN, "
    "with the same values; double stays") {
  // The last layer of a small MLP, 64 x 10 x 128 (x W^T), and the same shapes NN with alpha 0.5 (which
  // LIBXSMM does not take): OpenBLAS's by the rules (a side under 16).
  const int m = 64, n = 10, k = 128;
  std::mt19937 rng(21);
  std::uniform_real_distribution<float> u(-1, 1);
  std::vector<float> x(m * k), w(n * k), c(m * n);
  for (auto* v : {&x, &w}) {
    for (auto& e : *v) {
      e = u(rng);
    }
  }
  const auto want_nt = ref_gemm(false, true, m, n, k, 1.0, x, k, w, k, 0.0, c, n);
  const auto want_nn = ref_gemm(false, false, m, n, k, 0.5, x, k, w, n, 0.0, c, n);  // w read as k x n
  const dp::detail::mat_ref<const float> mx{x.data(), m, k, k, false}, mw_t{w.data(), k, n, k, true},
      mw{w.data(), k, n, n, false};
  const dp::detail::mat_ref<float> mc{c.data(), m, n, n, false};
  const auto close = [&](const std::vector<double>& want) {
    for (int i = 0; i < m * n; ++i) {
      REQUIRE(std::fabs(c[i] - want[i]) <= 1e-4 * (1 + std::fabs(want[i])));
    }
  };
  for (const bool generic : {false, true}) {
    const generic_openblas scope(generic);
    INFO("generic OpenBLAS=", generic);
    auto before = dp::counters();
    dp::detail::gemm(dp::detail::host_target{}, mx, mw_t, mc, 1.f, 0.f);
    close(want_nt);
    const bool nt_libxsmm = generic && dp::detail::has_libxsmm;
    CHECK(dp::counters().libxsmm_gemms - before.libxsmm_gemms == (nt_libxsmm ? 1 : 0));
    CHECK(dp::counters().onednn_gemms - before.onednn_gemms == (generic && !nt_libxsmm && dp::detail::has_onednn));
    before = dp::counters();
    dp::detail::gemm(dp::detail::host_target{}, mx, mw, mc, 0.5f, 0.f);
    close(want_nn);
    CHECK(dp::counters().libxsmm_gemms == before.libxsmm_gemms);
    CHECK(dp::counters().onednn_gemms - before.onednn_gemms == (generic && dp::detail::has_onednn ? 1 : 0));
    before = dp::counters();
    (void)dp::matmul(dp::ones<double>({64, 128}), dp::ones<double>({128, 10}));  // no other library has dgemm
    CHECK(dp::counters().onednn_gemms == before.onednn_gemms);
    CHECK(dp::counters().libxsmm_gemms == before.libxsmm_gemms);
  }
}

TEST_CASE("LIBXSMM takes a transposed B through a copy for outputs under 16 columns and copies of <= 2^13 values") {
  CHECK(dp::detail::libxsmm_takes_transposed(64, 10, 256, 1.f, 0.f));  // the digits model's forward
  CHECK(dp::detail::libxsmm_takes_transposed(359, 10, 256, 1.f, 1.f));
  CHECK_FALSE(dp::detail::libxsmm_takes_transposed(64, 16, 128, 1.f, 0.f));  // oneDNN's
  CHECK(dp::detail::libxsmm_takes_transposed(64, 10, 819, 1.f, 0.f));        // a copy of 8,190 values
  CHECK_FALSE(dp::detail::libxsmm_takes_transposed(64, 10, 820, 1.f, 0.f));  // 8,200
  CHECK_FALSE(dp::detail::libxsmm_takes_transposed(64, 10, 256, 2.f, 0.f));
  CHECK_FALSE(dp::detail::libxsmm_takes_transposed(4096, 10, 256, 1.f, 0.f));  // over 2^21 multiply-adds
}
