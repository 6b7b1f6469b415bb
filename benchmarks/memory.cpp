// Peak memory of training: the rise of the process's peak resident set over its size before the
// model exists, for 20 steps of MLP 784-512-512-10 at batch 256 (SGD with momentum). The PyTorch
// side (compare/torch_memory.py) measures the same way after `import torch`. Prints JSON.
#include <cstdio>
#include <fstream>
#include <sys/resource.h>

#include <dp/dp.hpp>

namespace nn = dp::nn;
using mlp = nn::sequential<nn::linear<784, 512>, nn::relu, nn::linear<512, 512>, nn::relu, nn::linear<512, 10>>;

namespace {
double rss_mb() {  // current resident set, from /proc
  std::ifstream in("/proc/self/statm");
  long pages = 0, resident = 0;
  in >> pages >> resident;
  return static_cast<double>(resident) * 4096.0 / 1e6;
}
double peak_mb() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_maxrss) / 1e3;
}
}  // namespace

int main() {
  dp::set_num_threads(1);
  const double before = rss_mb();
  nn::manual_seed(0);
  nn::trainer<mlp> t{mlp{}};
  auto opt = dp::optim::sgd(t, {.lr = 0.01, .momentum = 0.9});
  auto x = dp::randn<float>({256, 784}, dp::cpu(), 1);
  dp::tensor<std::int64_t> y = dp::cast<std::int64_t>(dp::rand<float>({256}, dp::cpu(), 2) * 9.99f);
  for (int i = 0; i < 20; ++i) {
    (void)t.backward(nn::cross_entropy, x, y);
    opt.step();
  }
  // Parameters + gradients + momentum alone: 3 x 669,706 floats = 8.0 MB; inputs 0.8 MB.
  std::printf("{\"peak_rise_mb\": %.2f, \"baseline_mb\": %.2f}\n", peak_mb() - before, before);
}
