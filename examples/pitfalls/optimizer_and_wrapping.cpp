// PyTorch pitfall: an optimizer created before wrapping (or from another copy of the model) updates
// parameters that are not the ones being trained, silently.
// In dp an optimizer is made from the object that owns the parameters (a trainer or a parallel), so
// it cannot point at anything else; wrapping a trainer in a parallel retires it, and an optimizer
// made from a retired trainer refuses its first step, with an error that says why.
#include <cstdio>

#include <dp/dp.hpp>

namespace nn = dp::nn;
using mlp = nn::sequential<nn::linear<4, 8>, nn::relu, nn::linear<8, 2>>;

int main() {
  nn::manual_seed(3);
  nn::trainer<mlp> before{mlp{}};  // say this was made "before wrapping"
  auto stale = dp::optim::sgd(before, {.lr = 0.1});
  auto x = dp::randn<float>({16, 4}, dp::cpu(), 1);
  dp::tensor<std::int64_t> y = dp::cast<std::int64_t>(dp::rand<float>({16}, dp::cpu(), 2) * 1.99f);
  (void)before.backward(nn::cross_entropy, x, y);                      // gradients are ready on `before`...
  dp::parallel<mlp> par{std::move(before), {dp::cpu(0), dp::cpu(1)}};  // ...then it is wrapped
  auto opt = dp::optim::sgd(par, {.lr = 0.1});                         // the right one: made from par
  par.backward(nn::cross_entropy, x, y);
  opt.step();
  try {
    stale.step();  // PyTorch would update the unwrapped copy; dp refuses at once
    return 1;
  } catch (const dp::runtime_error& e) {
    std::printf("as expected: %s\n", e.what());
  }
  return 0;
}
