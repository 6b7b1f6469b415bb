// A dp::tensor member that is neither nn::parameter nor nn::buffer would be lost or out of sync
// across replicas: rejected, naming the model, the member's index and its name.
// expect: dp: a member of this model is a dp::tensor that is neither nn::parameter nor nn::buffer
// expect: bad, 1, dp::cpu_abi::nn::detail::fixed_name<5>{"state"}
#include <dp/dp.hpp>

namespace nn = dp::nn;

struct bad {
  nn::linear<10, 2> fc;
  dp::tensor<float> state;
  auto forward(auto x) const { return fc(x); }
};

int main() { nn::trainer<bad> t{bad{}}; }
