// dp::parallel on one GPU: the bare trainer, training as it should (a small model: the layers on
// the GPU are checked against the host in nn.cu and train.cu).
#include <cmath>
#include <cstdint>

#include <doctest/doctest.h>

#include <dp/dp.hpp>

namespace nn = dp::nn;
using mlp = nn::sequential<nn::linear<64, 32>, nn::relu, nn::linear<32, 5>>;

TEST_CASE("dp::parallel on one GPU is the bare trainer") {
  nn::manual_seed(2);
  dp::parallel<mlp> par{mlp{}, {dp::cuda(0)}};
  auto x = dp::randn<float>({8, 64}, dp::cuda(0), 2);
  dp::tensor<std::int64_t> y = dp::cast<std::int64_t>(dp::rand<float>({8}, dp::cuda(0), 3) * 4.99f);
  auto opt = dp::optim::sgd(par, {.lr = 0.1, .momentum = 0.9});
  double first = par.backward(nn::cross_entropy, x, y), last = first;
  for (int i = 0; i < 20; ++i) {
    opt.step();
    last = par.backward(nn::cross_entropy, x, y);
  }
  CHECK(last < first);
}

TEST_CASE("on a GPU the model is written only through edit; a handle's write is refused") {
  nn::manual_seed(3);
  dp::parallel<mlp> par{mlp{}, {dp::cuda(0)}};
  dp::tensor<float> w = par.model().get<0>().weight.value();
  const auto before = w.to_vector();
  CHECK_THROWS_WITH_AS(w.fill(0.f), doctest::Contains("owner.edit([](Model& m)"), dp::value_error);
  CHECK(w.to_vector() == before);
  par.edit([](mlp& m) { m.get<0>().weight.assign(dp::clamp(m.get<0>().weight.value(), -0.01f, 0.01f)); });
  for (float v : w.to_vector()) {
    CHECK(std::abs(v) <= 0.01f);
  }
  // A layer made in f is made on the host: assigning it writes its values into the GPU memory.
  par.edit([](mlp& m) {
    const nn::seed_scope seed(4);
    m.get<2>() = nn::linear<32, 5>{};
  });
  const nn::seed_scope seed(4);
  const nn::linear<32, 5> fresh;
  CHECK(par.model().get<2>().weight.value().device() == dp::cuda(0));
  CHECK(par.model().get<2>().weight.value().to_vector() == fresh.weight.value().to_vector());
}
