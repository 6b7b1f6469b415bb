// Consecutive layers of a sequential must agree on the width between them.
// expect: dp: sequential layer <Layer> takes <Takes> features but layer <Previous> gives <Gives>
// expect: sequential_width_mismatch<1, 256, 0, 512>
#include <dp/dp.hpp>

namespace nn = dp::nn;

int main() {
  nn::sequential<nn::linear<784, 512>, nn::linear<256, 10>> bad;
  (void)bad;
}
