// dp::parallel wraps models only.
// expect: dp: a model is a library module or an aggregate struct
#include <vector>

#include <dp/dp.hpp>

int main() {
  dp::parallel<std::vector<float>> par{std::vector<float>{}, {dp::cpu(0)}};
  (void)par;
}
