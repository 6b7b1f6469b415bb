// PyTorch pitfall: a custom layer whose forward breaks when the batch is split (it assumes a batch
// size, or mixes samples), or whose parameters are not registered.
// In dp a custom layer is an aggregate: its parameters are found by reflection (nothing to register),
// its backward is derived from its forward, and dp::parallel gives the single-device result for any
// split of the batch (here 37 samples over 3 workers), which this program checks.
#include <cmath>
#include <cstdio>

#include <dp/dp.hpp>

namespace nn = dp::nn;

/// A gated linear unit: y = (x W1 + b1) * sigmoid(x W2 + b2).
template <dp::index_t In, dp::index_t Out>
struct glu {
  nn::linear<In, Out> value;
  nn::linear<In, Out> gate;
  auto forward(auto x) const { return value(x) * dp::sigmoid(gate(x)); }
};

struct model {
  glu<6, 12> block;
  nn::layer_norm<12> norm;
  nn::linear<12, 3> head;
  auto forward(auto x) const { return head(norm(block.forward(x))); }
};

int main() {
  nn::manual_seed(4);
  const model m;
  nn::trainer<model> single{m};
  dp::parallel<model> par{m, {dp::cpu(0), dp::cpu(1), dp::cpu(2)}};
  auto x = dp::randn<float>({37, 6}, dp::cpu(), 5);
  dp::tensor<std::int64_t> y = dp::cast<std::int64_t>(dp::rand<float>({37}, dp::cpu(), 6) * 2.99f);
  const double a = single.backward(nn::cross_entropy, x, y);
  const double b = par.backward(nn::cross_entropy, x, y);
  std::printf("parameters: %lld, loss on one device %.7f, on three %.7f\n",
              static_cast<long long>(nn::parameter_count(m)), a, b);
  return std::fabs(a - b) < 1e-6 ? 0 : 1;
}
