// edit(f) hands f the trained model; a callable that cannot take it is refused where it is passed.
// expect: dp: edit(f) calls f(Model&) with the trained model
// expect: pass a callable that takes the model by reference
#include <dp/dp.hpp>

int main() {
  dp::nn::trainer<dp::nn::linear<3, 2>> t{dp::nn::linear<3, 2>{}};
  t.edit([](dp::nn::linear<4, 2>& m) { m.weight.assign(dp::zeros<float>({2, 4})); });  // another model type
}
