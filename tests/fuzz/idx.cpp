// libFuzzer target: an IDX (MNIST-format) file in memory. Only dp::error may escape the library;
// anything else (another exception, a crash, a sanitizer report, a leak) is a finding.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include <dp/data/idx.hpp>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* bytes, std::size_t size) {
  const std::string_view in(reinterpret_cast<const char*>(bytes), size);
  try {
    const dp::tensor<float> t = dp::data::parse_idx(in, "fuzz-idx3-ubyte");
    // The values and the shape agree, and every value can be read.
    if (t.rank() < 1 || t.numel() < 0) {
      __builtin_trap();
    }
    volatile float sink = 0;
    const float* p = t.data();
    for (dp::index_t i = 0; i < t.numel(); ++i) {
      sink = sink + p[i];
    }
    // What mnist_dataset does with an images file.
    if (t.rank() == 3 && t.shape()[0] > 0) {
      const dp::tensor<float> flat = t.reshape({t.shape()[0], -1}) * (1.f / 255.f);
      (void)flat;
    }
  } catch (const dp::error&) {
  }
  return 0;
}
