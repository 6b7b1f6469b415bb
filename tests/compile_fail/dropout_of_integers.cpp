// Dropout scales the kept values by 1 / (1 - p): an integer input has no such values (the scale
// was an integer division by zero, a SIGFPE even in evaluation mode).
// expect: dp: dropout needs floating-point values
#include <dp/dp.hpp>

int main() {
  dp::nn::dropout drop;
  auto y = drop(dp::ones<std::int64_t>({4}));
  (void)y;
}
