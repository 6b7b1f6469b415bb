// clamp's bounds take the tensor's element type: 0.5 on an integer tensor would become 0.
// expect: dp: a floating-point number with an integer tensor would be converted to the tensor's integer type
#include <dp/dp.hpp>

int main() {
  auto counts = dp::from_vector<std::int64_t>({0, 1, 2});
  dp::tensor<std::int64_t> c = dp::clamp(counts, 0.5, 1.5);
  (void)c;
}
