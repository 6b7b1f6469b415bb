// A float number with an integer tensor would be converted to the tensor's type: `labels * 0.5`
// gave zeros and `labels < 0.5` meant `labels < 0`, silently. It is refused with the fix.
// expect: dp: a floating-point number with an integer tensor would be converted to the tensor's integer type
#include <dp/dp.hpp>

int main() {
  auto labels = dp::from_vector<std::int64_t>({0, 1, 2});
  dp::tensor<std::int64_t> half = labels * 0.5;
  (void)half;
}
