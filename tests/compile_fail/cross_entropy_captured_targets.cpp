// A loss that reads targets from outside backward would bake them into the traced step: refused,
// saying to pass them to backward. (A lambda capturing them is refused before, as any capturing
// lambda; a loss struct that compares can still point at them.)
// expect: dp: cross_entropy: when logits are traced, pass the targets as an argument of backward()
#include <dp/dp.hpp>
namespace nn = dp::nn;
using mlp = nn::sequential<nn::linear<4, 2>>;
struct outside_labels {
  const dp::tensor<std::int64_t>* labels;
  bool operator==(const outside_labels&) const = default;
  auto operator()(const auto& out, const auto&) const { return nn::cross_entropy(out, *labels); }
};
int main() {
  nn::trainer<mlp> t{mlp{}};
  const dp::tensor<std::int64_t> labels = dp::zeros<std::int64_t>({2});
  t.backward(outside_labels{&labels}, dp::zeros<float>({2, 4}), labels);
}
