// A model's parameters share one element type: they live in one flat buffer.
// expect: dp: all parameters of a model have one element type
// expect: declare every nn::parameter<T> and layer of the model with the same T
#include <dp/dp.hpp>

struct mixed {
  using value_type = float;
  dp::nn::parameter<float> w{dp::zeros<float>({2})};
  dp::nn::parameter<double> b{dp::zeros<double>({2})};
  auto forward(auto x) const { return x * w; }
  static void dp_members(auto& self, auto&& f) {
    f("w", self.w);
    f("b", self.b);
  }
};

int main() {
  dp::nn::trainer<mixed> t{mixed{}};
  (void)t;
}
