// A tensor's elements are numbers: cast<std::string> is refused.
// expect: dp: cast<U>: U must be an arithmetic type
#include <string>

#include <dp/dp.hpp>
int main() {
  auto x = dp::zeros<float>({4});
  auto c = dp::cast<std::string>(x);
  (void)c;
}
