// pow needs floating-point values: integer powers wrap and negative exponents have no integer result.
// expect: dp: pow(a, b) needs floating-point values
#include <dp/dp.hpp>

int main() {
  auto i = dp::arange<int>(1, 4);
  auto p = dp::pow(i, i);
  (void)p;
}
