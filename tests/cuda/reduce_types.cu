// Reductions on the GPU against the host: every op and element type (float, double, int64).
#include <cstdint>

#include "check.hpp"

using dp_cuda_test::check_same;
using dp_cuda_test::on_gpu;

TEST_CASE("sum, mean, max, min and argmax on the GPU: float, double and int64 match the host") {
  auto xf = dp::randn<float>({257, 129}, dp::cpu(), 11);
  auto xd = dp::randn<double>({257, 129}, dp::cpu(), 12);
  dp::tensor<std::int64_t> xi = dp::cast<std::int64_t>(dp::randn<float>({257, 129}, dp::cpu(), 13) * 1000.f);
  auto gf = on_gpu(xf);
  auto gd = on_gpu(xd);
  auto gi = on_gpu(xi);
  for (int axis : {0, 1}) {
    check_same(dp::sum(gf, axis).to_vector(), dp::sum(xf, axis).to_vector(), 1e-5);
    check_same(dp::mean(gd, axis).to_vector(), dp::mean(xd, axis).to_vector(), 1e-12);
    check_same(dp::min(gf, axis).to_vector(), dp::min(xf, axis).to_vector(), 0);
    check_same(dp::min(gd, axis).to_vector(), dp::min(xd, axis).to_vector(), 0);
    check_same(dp::max(gd, axis).to_vector(), dp::max(xd, axis).to_vector(), 0);
    CHECK(dp::sum(gi, axis).to_vector() == dp::sum(xi, axis).to_vector());  // integers: exact
    CHECK(dp::min(gi, axis).to_vector() == dp::min(xi, axis).to_vector());
    CHECK(dp::max(gi, axis).to_vector() == dp::max(xi, axis).to_vector());
    CHECK(dp::argmax(gd, axis).to_vector() == dp::argmax(xd, axis).to_vector());
  }
  CHECK(dp::sum(gi).item() == dp::sum(xi).item());
  CHECK(dp::min(gf).item() == dp::min(xf).item());
  CHECK(dp::sum(gd).item() == doctest::Approx(dp::sum(xd).item()).epsilon(1e-12));
}
