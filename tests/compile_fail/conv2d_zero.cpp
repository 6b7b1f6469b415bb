// A layer's sizes are template arguments, checked where the layer is named.
// expect: dp: conv2d needs positive sizes
#include <dp/dp.hpp>
int main() {
  dp::nn::conv2d<1, 0, 3> l;
  (void)l;
}
