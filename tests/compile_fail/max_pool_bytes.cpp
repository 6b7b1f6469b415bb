// max_pool2d pools 4- and 8-byte elements; a uint8 input is refused where the layer is called
// (it failed inside a bit-selection helper, with no dp: message), and nothing after it adds an error.
// expect: dp: max_pool2d pools elements of 4 or 8 bytes
// expect: dp::cast<float>(x)
#include <dp/dp.hpp>
int main() {
  dp::nn::max_pool2d<2> pool;
  auto y = pool(dp::zeros<std::uint8_t>({1, 1, 4, 4}));
  (void)y;
}
