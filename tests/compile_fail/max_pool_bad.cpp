// A pooling window of 0 is refused where the layer is named.
// expect: dp: max_pool2d needs K, Stride > 0 and Padding at most K / 2
#include <dp/dp.hpp>
int main() {
  dp::nn::max_pool2d<0> l;
  (void)l;
}
