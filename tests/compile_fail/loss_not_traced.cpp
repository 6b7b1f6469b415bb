// A loss that does not come from the model's output (here a fresh tensor) cannot be differentiated.
// expect: dp: the loss must be computed from the model's output with dp operations
#include <dp/dp.hpp>
namespace nn = dp::nn;
using mlp = nn::sequential<nn::linear<4, 2>>;
int main() {
  nn::trainer<mlp> t{mlp{}};
  t.backward([](const auto&, const auto&) { return dp::zeros<float>({}); }, dp::zeros<float>({2, 4}),
             dp::zeros<float>({2, 2}));
}
