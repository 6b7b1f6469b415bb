// Transcendental functions need floating-point values.
// expect: dp: exp(x) needs floating-point values
#include <dp/dp.hpp>

int main() {
  auto i = dp::zeros<int>({2});
  auto e = dp::exp(i);
  (void)e;
}
