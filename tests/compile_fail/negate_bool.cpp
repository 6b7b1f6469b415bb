// -mask of a bool tensor gave mask unchanged (a bool cannot be negative), silently; PyTorch refuses
// it too. It is refused with the fix.
// expect: dp: -x of a bool tensor gives x unchanged (a bool cannot be negative); use !x for the logical not
#include <dp/dp.hpp>

int main() {
  const auto mask = dp::from_vector<bool>({true, false});
  dp::tensor<bool> flipped = -mask;
  (void)flipped;
}
