// cross_entropy's logits are floating-point (four errors inside its kernels followed the message
// before).
// expect: dp: cross_entropy: logits must be floating-point
#include <dp/dp.hpp>
int main() {
  auto l = dp::nn::cross_entropy(dp::zeros<std::int64_t>({3, 4}), dp::zeros<std::int64_t>({3}));
  (void)l;
}
