// A loss that reads targets captured from outside backward would bake them into the traced step:
// refused, saying to pass them to backward.
// expect: dp: cross_entropy: when logits are traced, pass the targets as an argument of backward()
#include <dp/dp.hpp>
namespace nn = dp::nn;
using mlp = nn::sequential<nn::linear<4, 2>>;
int main() {
  nn::trainer<mlp> t{mlp{}};
  const dp::tensor<std::int64_t> labels = dp::zeros<std::int64_t>({2});
  t.backward([&](const auto& out, const auto&) { return nn::cross_entropy(out, labels); }, dp::zeros<float>({2, 4}),
             labels);
}
