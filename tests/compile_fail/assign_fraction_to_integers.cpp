// `counts = 0.7` on an integer tensor filled it with 0, silently: assignment of a number converted it
// as the operators did before they refused. It is refused with the fix.
// expect: dp: a floating-point number with an integer tensor would be converted to the tensor's integer type
#include <dp/dp.hpp>

int main() {
  dp::tensor<std::int32_t> counts = dp::zeros<std::int32_t>({3});
  counts = 0.7;
}
