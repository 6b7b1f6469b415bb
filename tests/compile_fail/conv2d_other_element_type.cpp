// A conv2d of floats given doubles is refused where it is called (traced, it read the input's slot
// among the float values: another tensor's memory); nothing after the message adds an error.
// expect: dp: conv2d: the input's element type differs from the layer's
// expect: dp::cast<T>(x)
#include <dp/dp.hpp>
int main() {
  dp::nn::conv2d<1, 2, 3> c;
  auto y = c(dp::zeros<double>({1, 1, 5, 5}));
  (void)y;
}
