// Embedding rows are picked by int64 indices; float indices are refused (and nothing after the
// message adds an error of its own).
// expect: dp: embedding takes int64 indices (dp::tensor<std::int64_t>)
#include <dp/dp.hpp>
int main() {
  dp::nn::embedding<10, 4> e;
  auto y = e(dp::zeros<float>({3}));
  (void)y;
}
