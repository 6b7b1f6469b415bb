// par.backward with a lambda loss that captures by reference: the same rule as a trainer's, one error.
// expect: dp: this loss holds values (a lambda's captures) it cannot compare
#include <dp/dp.hpp>
namespace nn = dp::nn;
using mlp = nn::sequential<nn::linear<4, 2>>;
int main() {
  dp::parallel<mlp> par{mlp{}, {dp::cpu(0), dp::cpu(1)}};
  float weight = 0.5f;
  par.backward([&weight](const auto& out, const auto& target) { return weight * nn::mse_loss(out, target); },
               dp::zeros<float>({2, 4}), dp::zeros<float>({2, 2}));
}
