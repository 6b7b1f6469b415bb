// A layer's sizes are template arguments, checked where the layer is named.
// expect: dp: layer_norm<N> needs N > 0
#include <dp/dp.hpp>
int main() {
  dp::nn::layer_norm<0> l;
  (void)l;
}
