// PyTorch pitfall: two DataParallel wrappers on the same GPU interfering with each other.
// In dp every dp::parallel owns its replicas, threads, buffers and communicator: two of them on the
// same devices are two independent trainings. This program trains both side by side and checks each
// against its own single-device run.
#include <cmath>
#include <cstdio>

#include <dp/dp.hpp>

namespace nn = dp::nn;
using mlp = nn::sequential<nn::linear<8, 16>, nn::relu, nn::linear<16, 3>>;

int main() {
  const std::vector<dp::device> devices{dp::cpu(0), dp::cpu(1)};
  nn::manual_seed(1);
  const mlp first, second;
  dp::parallel<mlp> a{first, devices}, b{second, devices};  // same devices, nothing shared
  nn::trainer<mlp> ref_a{first}, ref_b{second};
  auto opt_a = dp::optim::sgd(a, {.lr = 0.1});
  auto opt_b = dp::optim::adamw(b, {.lr = 1e-2});
  auto ref_opt_a = dp::optim::sgd(ref_a, {.lr = 0.1});
  auto ref_opt_b = dp::optim::adamw(ref_b, {.lr = 1e-2});
  auto x = dp::randn<float>({32, 8}, dp::cpu(), 2);
  dp::tensor<std::int64_t> y = dp::cast<std::int64_t>(dp::rand<float>({32}, dp::cpu(), 3) * 2.99f);
  for (int step = 0; step < 20; ++step) {
    a.backward(nn::cross_entropy, x, y);
    b.backward(nn::cross_entropy, x, y);
    opt_a.step();
    opt_b.step();
    ref_a.backward(nn::cross_entropy, x, y);
    ref_b.backward(nn::cross_entropy, x, y);
    ref_opt_a.step();
    ref_opt_b.step();
  }
  const float da = dp::max(dp::abs(a.model().get<0>().weight.value() - ref_a.model().get<0>().weight.value())).item();
  const float db = dp::max(dp::abs(b.model().get<0>().weight.value() - ref_b.model().get<0>().weight.value())).item();
  std::printf("largest difference from its own single-device run: %g and %g\n", da, db);
  return da < 1e-5f && db < 1e-5f ? 0 : 1;
}
