// The mean of integers has no integer value: cast first.
// expect: dp: mean needs floating-point values; use dp::cast<float>(x)
#include <dp/dp.hpp>
int main() {
  dp::tensor<std::int64_t> x = dp::zeros<std::int64_t>({4});
  auto m = dp::mean(x);
  (void)m;
}
