// Training on a GPU: the same traced plan, kernels instead of host loops. Built in CI, run when a
// GPU is lent.
#include <cmath>

#include <doctest/doctest.h>

#include <dp/dp.hpp>

namespace nn = dp::nn;

namespace {
struct net {
  nn::conv2d<1, 4, 3, 1, 1> conv;
  nn::max_pool2d<2> pool;
  nn::flatten flat;
  nn::linear<4 * 4 * 4, 16> fc1;
  nn::layer_norm<16> norm;
  nn::dropout drop{0.1f};
  nn::linear<16, 5> fc2;
  auto forward(auto x) const { return fc2(drop(dp::gelu(norm(fc1(flat(pool(dp::relu(conv(x))))))))); }
};
}  // namespace

TEST_CASE("a training step on the GPU gives the host's loss and gradients") {
  nn::manual_seed(1);
  const net model;
  nn::trainer<net> host{model};
  nn::trainer<net> gpu{model, dp::cuda(0)};
  auto x = dp::randn<float>({8, 1, 8, 8}, dp::cpu(), 2);
  dp::tensor<std::int64_t> y = dp::cast<std::int64_t>(dp::rand<float>({8}, dp::cpu(), 3) * 4.99f);
  const double lh = host.backward(nn::cross_entropy, x, y);
  const double lg = gpu.backward(nn::cross_entropy, x.to(dp::cuda(0)), y.to(dp::cuda(0)));
  CHECK(lg == doctest::Approx(lh).epsilon(1e-5));
  const auto gh = dp::detail::trainer_access::flat_grads(host).to_vector(),
             gg = dp::detail::trainer_access::flat_grads(gpu).to_vector();
  int bad = 0;
  for (std::size_t i = 0; i < gh.size(); ++i) {
    bad += !(std::fabs(gh[i] - gg[i]) <= 1e-5 + 1e-4 * std::fabs(gh[i]));
  }
  CHECK(bad == 0);  // (optimizer steps on the GPU are checked against the host in train.cu)
}
