// Uses an installed dp: a fused expression, a reduction and matmuls (OpenBLAS, and oneDNN and LIBXSMM
// when the config found them), checked exactly.
#include <cstdio>

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
  // Products of the sizes oneDNN (x W^T) and LIBXSMM (x W) take when the config found them (exact:
  // sums of 128 ones).
#ifndef DP_CONSUMER_EXPECT_ONEDNN
#define DP_CONSUMER_EXPECT_ONEDNN 0
#endif
#ifndef DP_CONSUMER_EXPECT_LIBXSMM
#define DP_CONSUMER_EXPECT_LIBXSMM 0
#endif
  const auto w = dp::ones<float>({128, 128});
  const float nt = dp::matmul(dp::ones<float>({64, 128}), w.t())[63][127].item();
  const float nn = dp::matmul(dp::ones<float>({64, 128}), w)[63][127].item();
  if (nt != 128.f || nn != 128.f || dp::detail::has_onednn != bool(DP_CONSUMER_EXPECT_ONEDNN) ||
      dp::detail::has_libxsmm != bool(DP_CONSUMER_EXPECT_LIBXSMM)) {
    std::printf(
        "dp consumer: 64x128x128 products %g and %g (expected 128); oneDNN %s (the config said %s), LIBXSMM %s (the "
        "config said %s)\n",
        nt, nn, dp::detail::has_onednn ? "used" : "not used", DP_CONSUMER_EXPECT_ONEDNN ? "used" : "not used",
        dp::detail::has_libxsmm ? "used" : "not used", DP_CONSUMER_EXPECT_LIBXSMM ? "used" : "not used");
    return 1;
  }
  std::printf("dp consumer: ok (sum %g, dot %g; host GEMMs through OpenBLAS%s%s)\n", sum, dot,
              dp::detail::has_onednn ? " and oneDNN" : "", dp::detail::has_libxsmm ? " and LIBXSMM" : "");
  return 0;
}
