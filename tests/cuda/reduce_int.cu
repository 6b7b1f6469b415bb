// Reductions on the GPU against the host: int64 sums, minima and maxima (exact), and argmax.
#include <cstdint>

#include "check.hpp"

using dp_cuda_test::on_gpu;

TEST_CASE("sum, max and min of int64 and argmax on the GPU match the host") {
  auto xd = dp::randn<double>({257, 129}, dp::cpu(), 12);
  dp::tensor<std::int64_t> xi = dp::cast<std::int64_t>(dp::randn<float>({257, 129}, dp::cpu(), 13) * 1000.f);
  auto gd = on_gpu(xd);
  auto gi = on_gpu(xi);
  for (int axis : {0, 1}) {
    CHECK(dp::sum(gi, axis).to_vector() == dp::sum(xi, axis).to_vector());  // integers: exact
    CHECK(dp::min(gi, axis).to_vector() == dp::min(xi, axis).to_vector());
    CHECK(dp::max(gi, axis).to_vector() == dp::max(xi, axis).to_vector());
    CHECK(dp::argmax(gd, axis).to_vector() == dp::argmax(xd, axis).to_vector());
  }
  CHECK(dp::sum(gi).item() == dp::sum(xi).item());
}
