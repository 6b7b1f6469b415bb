// cross_entropy's targets are class indices: a float target is refused.
// expect: dp: cross_entropy: targets are class indices of type int64 (dp::tensor<std::int64_t>)
#include <dp/dp.hpp>
int main() {
  auto l = dp::nn::cross_entropy(dp::zeros<float>({3, 4}), dp::zeros<float>({3}));
  (void)l;
}
