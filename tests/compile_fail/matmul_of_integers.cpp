// matmul runs on BLAS: float and double only.
// expect: dp: matmul supports float and double
#include <dp/dp.hpp>
int main() {
  auto a = dp::zeros<std::int64_t>({2, 2});
  dp::tensor<std::int64_t> y = dp::matmul(a, a);
}
