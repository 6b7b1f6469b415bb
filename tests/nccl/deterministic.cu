// Deterministic mode over the GPUs of one process (NCCL between them): the bits of one GPU. Built in
// CI with dp::nccl, run when a GPU is lent; the case needs two GPUs and says so (and passes) when
// there is one.
#include <cstring>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include <dp/dp.hpp>

namespace nn = dp::nn;

namespace {
using mlp = nn::sequential<nn::linear<16, 32>, nn::batch_norm<32>, nn::relu, nn::linear<32, 4>>;
}  // namespace

TEST_CASE("deterministic: the GPUs of one process give the bits of one GPU") {
  const int gpus = dp::cuda_device_count();
  if (gpus < 2) {
    MESSAGE("one GPU here: the case needs two (passes without checking)");
    return;
  }
  auto run = [&](int n) {
    nn::manual_seed(9);
    std::vector<dp::device> devs;
    for (int i = 0; i < n; ++i) {
      devs.push_back(dp::cuda(i));
    }
    dp::parallel<mlp> par{mlp{}, devs, {.deterministic = true, .chunk = 6}};
    auto opt = dp::optim::adamw(par, {.lr = 1e-2});
    auto x = dp::randn<float>({40, 16}, dp::cuda(0), 4);
    dp::tensor<std::int64_t> y = dp::cast<std::int64_t>(dp::rand<float>({40}, dp::cuda(0), 5) * 3.99f);
    for (int s = 0; s < 10; ++s) {
      (void)par.backward(nn::cross_entropy, x, y);
      opt.step();
    }
    std::vector<float> w;
    nn::for_each_tensor(par.model(), [&](const std::string&, const auto& t) {
      for (auto v : t.value().to(dp::cpu()).to_vector()) {
        w.push_back(static_cast<float>(v));
      }
    });
    return w;
  };
  const auto one = run(1);
  const auto all = run(gpus);
  REQUIRE(one.size() == all.size());
  CHECK(std::memcmp(one.data(), all.data(), one.size() * sizeof(float)) == 0);
}
