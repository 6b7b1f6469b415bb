// A sequential inside a sequential gives the width its last layer gives, and the next layer must take it.
// expect: dp: sequential layer <Layer> takes <Takes> features but layer <Previous> gives <Gives>
// expect: sequential_width_mismatch<1, 16, 0, 8>
#include <dp/dp.hpp>

namespace nn = dp::nn;

int main() {
  nn::sequential<nn::sequential<nn::linear<4, 8>, nn::relu>, nn::linear<16, 2>> bad;
  (void)bad;
}
