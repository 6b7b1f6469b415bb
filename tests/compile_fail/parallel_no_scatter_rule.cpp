// An argument that is neither a tensor (scattered on dimension 0) nor dp::replicated(v): rejected,
// naming its position and type, and the two ways to pass it.
// expect: dp: an argument of dp::parallel has no scatter rule
// expect: pass a batched dp::tensor (split on dimension 0) or wrap it in dp::replicated(v)
// expect: no_scatter_rule<1, std::vector<float
#include <vector>

#include <dp/dp.hpp>

namespace nn = dp::nn;

struct model {
  nn::linear<4, 2> fc;
  auto forward(auto x, auto) const { return fc(x); }
};

int main() {
  dp::parallel<model> par{model{}, {dp::cpu(0), dp::cpu(1)}};
  auto y = par(dp::zeros<float>({8, 4}), std::vector<float>{1, 2});
  (void)y;
}
