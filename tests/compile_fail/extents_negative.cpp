// A static extent is a size or dp::dyn.
// expect: dp: an extent is dp::dyn or a non-negative size
#include <dp/dp.hpp>
int main() {
  dp::tensor<float, dp::extents<-2, 3>> t = dp::zeros<float>({2, 3});
  (void)t;
}
