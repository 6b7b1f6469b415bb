// Uniform draws are floating-point.
// expect: dp: rand<T> needs a floating-point T
#include <dp/dp.hpp>
int main() {
  auto r = dp::rand<int>({4});
  (void)r;
}
