// residual<M> adds the block's output to its input: a block that changes the width is refused.
// expect: dp: residual<M>: the block's out_features differ from its in_features
#include <dp/dp.hpp>
int main() {
  dp::nn::residual<dp::nn::linear<8, 1>> r;
  (void)r;
}
