// where(c, a, b) does not convert: a float and a double branch are refused, naming the fix.
// expect: dp: where(c, a, b): a and b have different element types; convert one with dp::cast<T>(x)
#include <dp/dp.hpp>
int main() {
  auto c = dp::zeros<bool>({4});
  auto a = dp::zeros<float>({4});
  auto b = dp::zeros<double>({4});
  dp::tensor<float> y = dp::where(c, a, b);
}
