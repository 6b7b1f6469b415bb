// counts.fill(0.7) and dp::full<int>(shape, 0.5) converted the number at the call: zeros, silently.
// They take it through the rule of the operators, which refuses it with the fix.
// expect: dp: a floating-point number with an integer tensor would be converted to the tensor's integer type
#include <dp/dp.hpp>

int main() {
  dp::tensor<std::int32_t> counts = dp::zeros<std::int32_t>({3});
  counts.fill(0.7);
}
