// A tensor's element type is not const; read-only access is a const tensor.
// expect: dp: tensor<T> holds arithmetic values (float, double, an integer type or bool), not const ones
// expect: for read-only access pass a const tensor<T>&
#include <dp/dp.hpp>

int main() {
  dp::tensor<const float> t;
  (void)t;
}
