// A layer's sizes are template arguments, checked where the layer is named.
// expect: dp: batch_norm<C> needs C > 0
#include <dp/dp.hpp>
int main() {
  dp::nn::batch_norm<0> l;
  (void)l;
}
