// A step takes at most 8 inputs and targets.
// expect: dp: backward takes at most 8 inputs and targets
#include <dp/dp.hpp>
namespace nn = dp::nn;
struct wide {
  nn::linear<4, 2> fc;
  auto forward(auto a, auto, auto, auto, auto, auto, auto, auto) const { return fc(a); }
};
int main() {
  nn::trainer<wide> t{wide{}};
  auto x = dp::zeros<float>({2, 4});
  t.backward(nn::mse_loss, x, x, x, x, x, x, x, x, dp::zeros<float>({2, 2}));
}
