// Uses an installed dp: a fused expression, a reduction and a matmul (OpenBLAS), checked exactly.
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
  std::printf("dp consumer: ok (sum %g, dot %g)\n", sum, dot);
  return 0;
}
