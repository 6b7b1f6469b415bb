// A reduction past 2^31 elements on the GPU: 64-bit indices everywhere (the types: reduce_types.cu).
#include <cstdint>

#include "check.hpp"

TEST_CASE("a reduction over more than 2^31 elements on the GPU counts every one (64-bit indices)") {
  const dp::index_t n = (dp::index_t{1} << 31) + 77;  // 8.6 GB of float
  auto x = dp::zeros<float>({n}, dp::cuda(0));
  x.slice(0, n - 5, n - 4).fill(3.f);  // the largest element, past 2^31
  x.slice(0, 12, 13).fill(-2.f);       // the smallest
  CHECK(dp::argmax(x).item() == n - 5);
  CHECK(dp::max(x).item() == 3.f);
  CHECK(dp::min(x).item() == -2.f);
  CHECK(dp::sum(x).item() == doctest::Approx(1.0));
  x.fill(1.f);
  // Rounding of a float sum this long is about 1e-7 relative per level; a count that wrapped at 2^31
  // would be off by 100%.
  CHECK(static_cast<double>(dp::sum(x).item()) == doctest::Approx(static_cast<double>(n)).epsilon(1e-4));
  auto rows = dp::sum(x.slice(0, 0, 4096).reshape({4, 1024}), 1);
  CHECK(rows.to_vector() == std::vector<float>(4, 1024.f));
}
