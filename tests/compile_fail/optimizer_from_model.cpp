// An optimizer is made from the trainer or parallel that trains the model, never from a model.
// expect: dp: an optimizer is made from the object that trains the parameters
#include <dp/dp.hpp>

namespace nn = dp::nn;
using mlp = nn::sequential<nn::linear<4, 8>, nn::relu, nn::linear<8, 2>>;

int main() {
  dp::parallel<mlp> par{mlp{}, {dp::cpu(0)}};
  auto opt = dp::optim::sgd(par.model(), {.lr = 0.1});
  (void)opt;
}
