// A forward that writes a member cannot be const, and dp requires a const forward: state changes
// only through nn::buffer, so replicas cannot drift apart.
// expect: dp: the model needs a const forward taking its inputs
#include <dp/dp.hpp>

namespace nn = dp::nn;

struct counting {
  nn::linear<4, 2> fc;
  nn::buffer<float> calls{dp::zeros<float>({1})};
  auto forward(auto x) {
    calls = nn::buffer<float>{dp::ones<float>({1})};  // writes a member
    return fc(x);
  }
};

int main() {
  nn::trainer<counting> t{counting{}};
  (void)t.backward(nn::mse_loss, dp::zeros<float>({3, 4}), dp::zeros<float>({3, 2}));
}
