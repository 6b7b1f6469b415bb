// A layer's sizes are template arguments, checked where the layer is named.
// expect: dp: linear<In, Out> needs positive widths
#include <dp/dp.hpp>
int main() {
  dp::nn::linear<0, 3> l;
  (void)l;
}
