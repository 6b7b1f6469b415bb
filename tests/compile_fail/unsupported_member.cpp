// A plain value member (an int, a float) could drift between replicas: rejected with its name.
// expect: dp: a member of this model is not a module, an nn::parameter or an nn::buffer
// expect: fixed_name<5>{"steps"}
#include <dp/dp.hpp>

namespace nn = dp::nn;

struct with_counter {
  nn::linear<4, 2> fc;
  int steps = 0;
  auto forward(auto x) const { return fc(x); }
};

int main() { nn::trainer<with_counter> t{with_counter{}}; }
