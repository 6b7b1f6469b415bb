// backward(loss, inputs..., target): the target is the last argument and cannot be left out.
// expect: dp: backward(loss, inputs..., target) needs at least one input and a target
#include <dp/dp.hpp>
namespace nn = dp::nn;
using mlp = nn::sequential<nn::linear<4, 2>>;
int main() {
  nn::trainer<mlp> t{mlp{}};
  t.backward(nn::cross_entropy, dp::zeros<float>({2, 4}));
}
