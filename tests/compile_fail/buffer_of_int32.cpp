// Buffers hold the element types that replicas keep in sync and checkpoints store.
// expect: dp: nn::buffer<T> holds float, double or std::int64_t
// expect: declare the buffer with one of them
#include <cstdint>

#include <dp/dp.hpp>

struct counted {
  dp::nn::parameter<float> w{dp::zeros<float>({2})};
  dp::nn::buffer<std::int32_t> seen{dp::zeros<std::int32_t>({1})};
  auto forward(auto x) const { return x * w; }
};

int main() {
  counted m;
  (void)m;
}
