// A residual block that is a sequential must end at the width it starts with.
// expect: dp: residual<M>: the block's out_features differ from its in_features
#include <dp/dp.hpp>

namespace nn = dp::nn;

int main() {
  nn::residual<nn::sequential<nn::linear<4, 8>, nn::relu>> bad;
  (void)bad;
}
