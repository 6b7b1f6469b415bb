// Reductions on the GPU against the host: every op on float and double (int64 and argmax are in
// reduce_int.cu, so that each file compiles within the per-file budget).
#include "check.hpp"

using dp_cuda_test::check_same;
using dp_cuda_test::on_gpu;

TEST_CASE("sum, mean, max and min on the GPU: float and double match the host") {
  auto xf = dp::randn<float>({257, 129}, dp::cpu(), 11);
  auto xd = dp::randn<double>({257, 129}, dp::cpu(), 12);
  auto gf = on_gpu(xf);
  auto gd = on_gpu(xd);
  for (int axis : {0, 1}) {
    check_same(dp::sum(gf, axis).to_vector(), dp::sum(xf, axis).to_vector(), 1e-5);
    check_same(dp::mean(gd, axis).to_vector(), dp::mean(xd, axis).to_vector(), 1e-12);
    check_same(dp::min(gf, axis).to_vector(), dp::min(xf, axis).to_vector(), 0);
    check_same(dp::min(gd, axis).to_vector(), dp::min(xd, axis).to_vector(), 0);
    check_same(dp::max(gd, axis).to_vector(), dp::max(xd, axis).to_vector(), 0);
  }
  CHECK(dp::min(gf).item() == dp::min(xf).item());
  CHECK(dp::sum(gd).item() == doctest::Approx(dp::sum(xd).item()).epsilon(1e-12));
}
