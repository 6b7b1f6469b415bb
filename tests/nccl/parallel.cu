// dp::parallel over the GPUs of one process (NCCL between them): the same training as one GPU on
// the whole batch (deterministic mode is in deterministic.cu). Built in CI with dp::nccl, run when
// a GPU is lent; the case needs two GPUs and says so (and passes) when there is one.
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include <dp/dp.hpp>

namespace nn = dp::nn;

namespace {
using mlp = nn::sequential<nn::linear<16, 32>, nn::batch_norm<32>, nn::relu, nn::linear<32, 4>>;
}  // namespace

TEST_CASE("parallel over the GPUs of one process equals one GPU on the whole batch") {
  const int gpus = dp::cuda_device_count();
  if (gpus < 2) {
    MESSAGE("one GPU here: the multi-GPU case needs two (passes without checking)");
    return;
  }
  nn::manual_seed(3);
  const mlp model;
  std::vector<dp::device> devs;
  for (int i = 0; i < gpus; ++i) {
    devs.push_back(dp::cuda(i));
  }
  dp::parallel<mlp> one{mlp(model), {dp::cuda(0)}};
  dp::parallel<mlp> many{mlp(model), devs};
  CHECK(many.communicator_name().find("NCCL") != std::string::npos);
  auto o1 = dp::optim::sgd(one, {.lr = 0.1});
  auto o2 = dp::optim::sgd(many, {.lr = 0.1});
  auto x = dp::randn<float>({37, 16}, dp::cuda(0), 4);
  dp::tensor<std::int64_t> y = dp::cast<std::int64_t>(dp::rand<float>({37}, dp::cuda(0), 5) * 3.99f);
  for (int s = 0; s < 5; ++s) {
    CHECK(many.backward(nn::cross_entropy, x, y) ==
          doctest::Approx(one.backward(nn::cross_entropy, x, y)).epsilon(1e-5));
    o1.step();
    o2.step();
  }
  // Every replica of `many` against the single GPU's parameters.
  std::vector<float> a;
  dp::detail::replica_access::for_each_replica(
      one, [&](std::size_t, const auto& w, const auto&) { a = w.to(dp::cpu()).to_vector(); });
  std::vector<std::vector<float>> b(devs.size());
  dp::detail::replica_access::for_each_replica(
      many, [&](std::size_t i, const auto& w, const auto&) { b[i] = w.to(dp::cpu()).to_vector(); });
  double worst = 0;
  for (const auto& r : b) {
    REQUIRE(r.size() == a.size());
    for (std::size_t i = 0; i < a.size(); ++i) {
      worst = std::max(worst, static_cast<double>(std::fabs(a[i] - r[i])));
    }
  }
  CHECK(worst < 1e-5);
}
