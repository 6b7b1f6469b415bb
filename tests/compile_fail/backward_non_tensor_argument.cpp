// A step's inputs and target are tensors of the model element types; anything else is refused by
// name (not by an error deep inside the trainer).
// expect: dp: backward's inputs and target are dp::tensor<float>, dp::tensor<double> or dp::tensor<std::int64_t>
#include <dp/dp.hpp>

int main() {
  dp::nn::trainer<dp::nn::linear<3, 2>> t{dp::nn::linear<3, 2>{}};
  (void)t.backward(dp::nn::mse_loss, dp::zeros<float>({2, 3}), 3);  // an int as the target
}
