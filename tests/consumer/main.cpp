// Uses an installed dp: a fused expression, a reduction and matmuls (OpenBLAS, and oneDNN and LIBXSMM
// when the config found them), checked exactly.
#include <cstdio>
#include <vector>

#include <dp/dp.hpp>

int main() {
  auto x = dp::full<float>({4, 3}, 2.f);
  auto y = dp::empty<float>({4, 3});
  y = 3.f * x + 1.f;                                    // 7 everywhere, one fused pass
  const float sum = dp::sum(y * y).item();              // 12 * 49
  const float dot = dp::matmul(x, x.t())[1][2].item();  // 3 * 2 * 2
  if (sum != 588.f || dot != 12.f || dp::version_major != 0) {
    std::printf("dp consumer: wrong values: sum %g (expected 588), dot %g (expected 12)\n", sum, dot);
    return 1;
  }
  // Products of the sizes oneDNN (x W^T) and LIBXSMM (x W) take when the config found them, of
  // small integers (exact in float), against integer loops.
#ifndef DP_CONSUMER_EXPECT_ONEDNN
#define DP_CONSUMER_EXPECT_ONEDNN 0
#endif
#ifndef DP_CONSUMER_EXPECT_LIBXSMM
#define DP_CONSUMER_EXPECT_LIBXSMM 0
#endif
  std::vector<float> xv(64 * 128), wv(128 * 128);
  for (int i = 0; i < 64 * 128; ++i) {
    xv[i] = static_cast<float>(i % 7);
  }
  for (int i = 0; i < 128 * 128; ++i) {
    wv[i] = static_cast<float>(i % 5) - 2.f;
  }
  const auto x64 = dp::from_vector(xv, {64, 128}), w = dp::from_vector(wv, {128, 128});
  const auto nt = dp::matmul(x64, w.t()).to_vector(), nn = dp::matmul(x64, w).to_vector();
  int wrong = 0;
  for (int i = 0; i < 64; ++i) {
    for (int j = 0; j < 128; ++j) {
      long want_nt = 0, want_nn = 0;
      for (int p = 0; p < 128; ++p) {
        want_nt += static_cast<long>(xv[i * 128 + p]) * static_cast<long>(wv[j * 128 + p]);
        want_nn += static_cast<long>(xv[i * 128 + p]) * static_cast<long>(wv[p * 128 + j]);
      }
      wrong += (nt[i * 128 + j] != static_cast<float>(want_nt)) + (nn[i * 128 + j] != static_cast<float>(want_nn));
    }
  }
  if (wrong != 0 || dp::detail::has_onednn != bool(DP_CONSUMER_EXPECT_ONEDNN) ||
      dp::detail::has_libxsmm != bool(DP_CONSUMER_EXPECT_LIBXSMM)) {
    std::printf(
        "dp consumer: %d wrong elements in two 64x128x128 products; oneDNN %s (the config said %s), LIBXSMM "
        "%s (the config said %s)\n",
        wrong, dp::detail::has_onednn ? "used" : "not used", DP_CONSUMER_EXPECT_ONEDNN ? "used" : "not used",
        dp::detail::has_libxsmm ? "used" : "not used", DP_CONSUMER_EXPECT_LIBXSMM ? "used" : "not used");
    return 1;
  }
  std::printf("dp consumer: ok (sum %g, dot %g; host GEMMs through OpenBLAS%s%s)\n", sum, dot,
              dp::detail::has_onednn ? " and oneDNN" : "", dp::detail::has_libxsmm ? " and LIBXSMM" : "");
  return 0;
}
