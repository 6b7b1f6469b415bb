// Adding a float tensor to a double tensor is rejected with a message that says how to fix it.
// expect: dp: the operands have different element types
// expect: dp::cast<T>(x)
#include <dp/dp.hpp>

int main() {
  auto a = dp::zeros<float>({2});
  auto b = dp::zeros<double>({2});
  auto c = a + b;
  (void)c;
}
