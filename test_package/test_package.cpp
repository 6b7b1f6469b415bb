// Checks the packaged dp: a fused expression and a matmul (OpenBLAS) with exact results.
#include <cstdio>

#include <dp/dp.hpp>

int main() {
  auto a = dp::full<float>({2, 5}, 1.5f);
  auto b = dp::empty<float>({2, 5});
  b = a * a - 0.25f;                                    // 2 everywhere
  const float total = dp::sum(b).item();                // 20
  const float dot = dp::matmul(b, b.t())[0][1].item();  // 5 * 2 * 2
  std::printf("dp %d.%d.%d: sum %g, dot %g\n", dp::version_major, dp::version_minor, dp::version_patch, total, dot);
  return total == 20.f && dot == 20.f ? 0 : 1;
}
