// matmul on the GPU (cuBLAS) against the host (OpenBLAS), in every form torch.matmul takes.
#include "check.hpp"

using dp_cuda_test::check_same;
using dp_cuda_test::on_gpu;

TEST_CASE("matmul on the GPU: batched, broadcast batch, vectors, padded rows and double match the host") {
  auto a = dp::randn<float>({3, 17, 33}, dp::cpu(), 1), b = dp::randn<float>({3, 33, 9}, dp::cpu(), 2);
  check_same(dp::matmul(on_gpu(a), on_gpu(b)).to_vector(), dp::matmul(a, b).to_vector(), 1e-4);
  auto w = dp::randn<float>({33, 5}, dp::cpu(), 3);  // one matrix against a batch
  check_same(dp::matmul(on_gpu(a), on_gpu(w)).to_vector(), dp::matmul(a, w).to_vector(), 1e-4);
  auto v = dp::randn<float>({33}, dp::cpu(), 4), u = dp::randn<float>({17}, dp::cpu(), 5);
  auto m = dp::randn<float>({17, 33}, dp::cpu(), 6);
  check_same(dp::matmul(on_gpu(m), on_gpu(v)).to_vector(), dp::matmul(m, v).to_vector(), 1e-4);
  check_same(dp::matmul(on_gpu(u), on_gpu(m)).to_vector(), dp::matmul(u, m).to_vector(), 1e-4);
  auto wide = dp::randn<float>({17, 40}, dp::cpu(), 7);  // rows padded: a view of the first 33 columns
  auto padded_h = wide.slice(1, 0, 33);
  auto padded_g = on_gpu(wide).slice(1, 0, 33);
  check_same(dp::matmul(padded_g, on_gpu(w)).to_vector(), dp::matmul(padded_h, w).to_vector(), 1e-4);
  auto ad = dp::randn<double>({31, 20}, dp::cpu(), 8), bd = dp::randn<double>({12, 20}, dp::cpu(), 9);
  check_same(dp::matmul(on_gpu(ad), on_gpu(bd).t()).to_vector(), dp::matmul(ad, bd.t()).to_vector(), 1e-12);
}

TEST_CASE("matmul on the GPU with an empty inner dimension gives zeros, like the host and PyTorch") {
  auto a = dp::randn<float>({4, 0}, dp::cpu(), 1), b = dp::randn<float>({0, 6}, dp::cpu(), 2);
  dp::tensor<float> g = dp::matmul(on_gpu(a), on_gpu(b));
  CHECK(g.shape() == dp::shape{4, 6});
  CHECK(g.to_vector() == std::vector<float>(24, 0.f));
  CHECK(dp::matmul(a, b).to_vector() == std::vector<float>(24, 0.f));
  // Into existing values with beta: C = beta C (an empty sum added to C).
  auto c = dp::full<float>({4, 6}, 2.f, dp::cuda(0));
  dp::detail::matmul_into(c, on_gpu(a), on_gpu(b), 1.f, 0.5f);
  CHECK(c.to_vector() == std::vector<float>(24, 1.f));
}
