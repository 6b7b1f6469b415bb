// Assignments on the GPU that read what they write: compound assignment and expressions over the
// destination itself (a transposed read needs a temporary), against the host.
#include "check.hpp"

using dp_cuda_test::check_same;
using dp_cuda_test::on_gpu;

TEST_CASE("+=, -=, *= and an in-place expression over a transposed self on the GPU match the host") {
  auto h = dp::randn<float>({65, 65}, dp::cpu(), 1);
  auto g = on_gpu(h);
  auto z = dp::randn<float>({65, 65}, dp::cpu(), 2);
  auto gz = on_gpu(z);
  h += 2.f * z;
  g += 2.f * gz;
  h -= dp::sin(h);
  g -= dp::sin(g);
  h *= 0.5f;
  g *= 0.5f;
  check_same(g.to_vector(), h.to_vector(), 1e-6);
  h = h.t() + h;  // every element reads another that is also written: needs a temporary
  g = g.t() + g;
  check_same(g.to_vector(), h.to_vector(), 1e-6);
  h += h.t();
  g += g.t();
  check_same(g.to_vector(), h.to_vector(), 1e-6);
  auto hs = h.slice(0, 1, 65), gs = g.slice(0, 1, 65);  // overlapping shifted view
  h.slice(0, 0, 64) = hs * 3.f;
  g.slice(0, 0, 64) = gs * 3.f;
  check_same(g.to_vector(), h.to_vector(), 1e-6);
}
