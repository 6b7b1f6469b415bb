// A layer's sizes are template arguments, checked where the layer is named.
// expect: dp: embedding<Num, Dim> needs positive sizes
#include <dp/dp.hpp>
int main() {
  dp::nn::embedding<0, 4> l;
  (void)l;
}
