// An operand that is neither a tensor, an expression nor a number: one short diagnostic from the
// concept, naming the constraint that failed.
// expect: binary_operands
#include <string>

#include <dp/dp.hpp>

int main() {
  auto a = dp::zeros<float>({2});
  auto c = a + std::string("1");
  (void)c;
}
