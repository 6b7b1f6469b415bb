// A sequential without layers has no forward.
// expect: dp: sequential needs at least one layer
#include <dp/dp.hpp>
int main() {
  dp::nn::sequential<> s;
  (void)s;
}
