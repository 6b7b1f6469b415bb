// A lambda loss that captures a value: a trainer replays the plan traced with the first value it saw
// (a new lambda of the same type, or a captured reference changed since), so it is refused.
// expect: dp: this loss holds values (a lambda's captures) it cannot compare
#include <dp/dp.hpp>
namespace nn = dp::nn;
using mlp = nn::sequential<nn::linear<4, 2>>;
int main() {
  nn::trainer<mlp> t{mlp{}};
  const float weight = 0.5f;
  t.backward([weight](const auto& out, const auto& target) { return weight * nn::mse_loss(out, target); },
             dp::zeros<float>({2, 4}), dp::zeros<float>({2, 2}));
}
