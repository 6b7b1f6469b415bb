// Uses an installed dp: a fused expression, a reduction and matmuls (OpenBLAS, and oneDNN when the
// config found it), checked exactly.
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
  // A product of the size oneDNN takes when the config found it (exact: sums of 128 ones).
#ifndef DP_CONSUMER_EXPECT_ONEDNN
#define DP_CONSUMER_EXPECT_ONEDNN 0
#endif
  const float big = dp::matmul(dp::ones<float>({64, 128}), dp::ones<float>({128, 128}))[63][127].item();
  if (big != 128.f || dp::detail::has_onednn != bool(DP_CONSUMER_EXPECT_ONEDNN)) {
    std::printf("dp consumer: 64x128x128 product %g (expected 128); oneDNN %s, the config said %s\n", big,
                dp::detail::has_onednn ? "used" : "not used", DP_CONSUMER_EXPECT_ONEDNN ? "used" : "not used");
    return 1;
  }
  std::printf("dp consumer: ok (sum %g, dot %g; host GEMMs through OpenBLAS%s)\n", sum, dot,
              dp::detail::has_onednn ? " and oneDNN" : "");
  return 0;
}
