// A residual block takes the width the layer before it gives.
// expect: dp: sequential layer <Layer> takes <Takes> features but layer <Previous> gives <Gives>
// expect: sequential_width_mismatch<1, 8, 0, 4>
#include <dp/dp.hpp>

namespace nn = dp::nn;

int main() {
  nn::sequential<nn::linear<3, 4>, nn::residual<nn::sequential<nn::linear<8, 8>, nn::relu>>> bad;
  (void)bad;
}
