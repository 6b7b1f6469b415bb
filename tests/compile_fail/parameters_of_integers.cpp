// Parameters are trained by gradients: float or double.
// expect: dp: a model's parameters are float or double (and all of one type)
#include <dp/dp.hpp>
namespace nn = dp::nn;
struct counts {
  nn::parameter<std::int64_t> n{dp::zeros<std::int64_t>({2})};
  auto forward(auto x) const { return x; }
};
int main() { nn::trainer<counts> t{counts{}}; }
