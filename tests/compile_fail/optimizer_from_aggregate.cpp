// The same mistake with a user's aggregate model (no value_type): the dp: line comes first.
// expect: dp: an optimizer is made from the object that trains the parameters
#include <dp/dp.hpp>

namespace nn = dp::nn;
struct net {
  nn::linear<4, 2> fc;
  auto forward(auto x) const { return fc(x); }
};

int main() {
  net model;
  auto opt = dp::optim::adamw(model);
  (void)opt;
}
