// Static extents have at most dp::max_rank dimensions.
// expect: dp: extents<...> has more dimensions than dp::max_rank
#include <dp/dp.hpp>
int main() {
  dp::tensor<float, dp::extents<1, 1, 1, 1, 1, 1, 1, 1, 1>> t = dp::zeros<float>({1, 1, 1, 1, 1, 1, 1, 1, 1});
  (void)t;
}
