// Two tensors of different element types get the same message, not a failed deduction.
// expect: dp: matmul: the operands have different element types
#include <dp/dp.hpp>
int main() {
  auto a = dp::zeros<float>({2, 3});
  auto b = dp::zeros<double>({3, 2});
  auto c = dp::matmul(a, b);
  (void)c;
}
