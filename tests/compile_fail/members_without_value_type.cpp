// A model that lists its members with dp_members hides their types from reflection: the trainer
// asks for the element type instead of failing somewhere inside.
// expect: dp: trainer<Model> cannot see the element type of the model's parameters
// expect: add `using value_type = float;` (or double) to the model
#include <dp/dp.hpp>

namespace nn = dp::nn;

struct listed {
  nn::parameter<float> w{dp::zeros<float>({4, 2})};
  static void dp_members(auto& self, auto&& f) { f("w", self.w); }
  auto forward(auto x) const { return dp::matmul(x, w); }
};

int main() { nn::trainer<listed> t{listed{}}; }
