// par.backward with a target that is not a tensor: the scatter rule's message, naming its position
// and type, is the one error (a shape error inside the step came first before).
// expect: dp: an argument of dp::parallel has no scatter rule
// expect: no_scatter_rule<1, int>
#include <dp/dp.hpp>

namespace nn = dp::nn;
using mlp = nn::sequential<nn::linear<4, 8>, nn::relu, nn::linear<8, 2>>;

int main() {
  dp::parallel<mlp> par{mlp{}, {dp::cpu(0), dp::cpu(1)}};
  par.backward(nn::cross_entropy, dp::zeros<float>({8, 4}), 3);
}
