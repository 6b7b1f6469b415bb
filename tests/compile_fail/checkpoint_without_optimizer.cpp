// A checkpoint's third argument is the optimizer; the model in its place is a compile error.
// expect: dp: a checkpoint's third argument is the optimizer that trains the model
#include <dp/dp.hpp>

namespace nn = dp::nn;
using mlp = nn::sequential<nn::linear<4, 8>, nn::relu, nn::linear<8, 2>>;

int main() {
  dp::parallel<mlp> par{mlp{}, {dp::cpu(0)}};
  dp::io::save_checkpoint("run.ckpt", par, par.model(), {.epoch = 1});
}
