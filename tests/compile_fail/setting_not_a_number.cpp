// A module's settings are its plain values (numbers and flags), which a trainer compares around edit
// and dp::parallel broadcasts; a tensor named as a setting is refused where the settings are listed.
// expect: dp: dp_settings names a module's plain values
// expect: keep tensors in dp_members
#include <dp/dp.hpp>

namespace nn = dp::nn;

struct scaled {
  using value_type = float;
  nn::parameter<float> w{dp::ones<float>({4})};
  dp::tensor<float> shift = dp::zeros<float>({4});
  static void dp_members(auto& self, auto&& f) { f("w", self.w); }
  static void dp_settings(auto& self, auto&& f) { f("shift", self.shift); }
  auto forward(auto x) const { return x * w + shift; }
};

int main() { nn::trainer<scaled> t{scaled{}}; }
