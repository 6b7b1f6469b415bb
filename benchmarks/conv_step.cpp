// A LeNet-style convolutional training step (forward, cross_entropy, backward, SGD with momentum),
// fp32, 28x28 single-channel inputs at batch 64, at 1 and 2 threads:
//   conv 1->6 5x5, relu, max-pool 2, conv 6->16 5x5, relu, max-pool 2, flatten, 256-120-84-10 MLP.
// The PyTorch side (the same model; its convolutions run through oneDNN) is compare/torch_conv_step.py.
#include <cstdint>

#include <dp/dp.hpp>

#include "common.hpp"

namespace nn = dp::nn;

namespace {

using lenet =
    nn::sequential<nn::conv2d<1, 6, 5>, nn::relu, nn::max_pool2d<2>, nn::conv2d<6, 16, 5>, nn::relu, nn::max_pool2d<2>,
                   nn::flatten, nn::linear<256, 120>, nn::relu, nn::linear<120, 84>, nn::relu, nn::linear<84, 10>>;

void lenet_step(benchmark::State& s) {
  dp::set_num_threads(static_cast<int>(s.range(0)));
  nn::manual_seed(0);
  nn::trainer<lenet> t{lenet{}};
  auto opt = dp::optim::sgd(t, {.lr = 0.01, .momentum = 0.9});
  auto x = dp::randn<float>({64, 1, 28, 28}, dp::cpu(), 1);
  auto y = dp::tensor<std::int64_t>(dp::cast<std::int64_t>(dp::rand<float>({64}, dp::cpu(), 2) * 9.99f));
  dp_bench::timed_steps(s, t, opt, x, y);
}

}  // namespace

BENCHMARK(lenet_step)->Arg(1)->Arg(2)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK_MAIN();
