// safetensors stores the types PyTorch reads back the same: uint16 is refused.
// expect: dp: safetensors holds float, double, int64, int32, uint8 or bool
#include <cstdint>

#include <dp/dp.hpp>
int main() {
  auto t = dp::zeros<std::uint16_t>({2});
  dp::io::write("x.safetensors", {dp::io::make_entry("t", t)}, {});
}
