// Reflection reaches 32 members: a flat model of 33 is refused once, with how to fix it (it printed
// about 140 errors before: every member visit failed on its own).
// expect: dp: a model aggregate has more than 32 members; group some into a nested struct
#include <dp/dp.hpp>
namespace nn = dp::nn;
using p = nn::parameter<float>;
struct huge {
  p a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, b0, b1, b2, b3, b4, b5, b6, b7, b8, b9;
  p c0, c1, c2, c3, c4, c5, c6, c7, c8, c9, d0, d1, d2;
  auto forward(auto x) const { return x; }
};
int main() { nn::trainer<huge> t{huge{}}; }
