// A float operand times a double expression: the double one was evaluated as float, silently.
// expect: dp: matmul: the operands have different element types
// expect: dp::cast<T>(x)
#include <dp/dp.hpp>
int main() {
  auto a = dp::zeros<float>({2, 3});
  auto b = dp::zeros<double>({3, 2});
  auto c = dp::matmul(a, b * 1.0);
  (void)c;
}
