// mask - other of bool tensors compiled and gave their exclusive or (0 - 1 wrapped to true),
// silently; PyTorch refuses it. It is refused with the fix.
// expect: dp: a - b of bool values gives their exclusive or
#include <dp/dp.hpp>

int main() {
  const auto a = dp::from_vector<bool>({true, false});
  const auto b = dp::from_vector<bool>({true, true});
  dp::tensor<bool> d = a - b;
  (void)d;
}
