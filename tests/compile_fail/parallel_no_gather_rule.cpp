// An output dp::parallel cannot gather: rejected, naming the type.
// expect: dp: the model's forward returns a type dp::parallel cannot gather
// expect: no_gather_rule<std::__cxx11::basic_string<char> >
#include <string>

#include <dp/dp.hpp>

namespace nn = dp::nn;

struct model {
  nn::linear<4, 2> fc;
  auto forward(auto) const { return std::string("not a tensor"); }
};

int main() {
  dp::parallel<model> par{model{}, {dp::cpu(0), dp::cpu(1)}};
  auto y = par(dp::zeros<float>({8, 4}));
  (void)y;
}
