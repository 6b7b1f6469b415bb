// libFuzzer target: a safetensors file in memory. Parses and validates the header, reads every
// entry with its own dtype (touching each value), verifies the CRC-32, and loads the file into a
// tiny model the way dp::io::load does. Only dp::error may escape the library; anything else
// (another exception, a crash, a sanitizer report, a leak) is a finding.
#include <cstddef>
#include <cstdint>
#include <string>

#include <dp/io/model.hpp>
#include <dp/io/safetensors.hpp>
#include <dp/nn/layers/linear.hpp>
#include <dp/nn/layers/norm.hpp>
#include <dp/nn/module.hpp>

namespace {

namespace io = dp::io;
namespace nn = dp::nn;

// The model the corpus's "tiny" files fit: fc.weight [3, 2], fc.bias [3] (F32), bn.* [3] (F32)
// and bn.num_batches_tracked [] (I64). Members are listed by hand: clang 14 cannot run dp's
// aggregate reflection (member pointers to subobjects as template arguments).
struct tiny {
  nn::linear<2, 3> fc;
  nn::batch_norm<3> bn;
  static void dp_members(auto& self, auto&& f) {
    f("fc", self.fc);
    f("bn", self.bn);
  }
};

// Reads an entry as T and folds its values, so every element is loaded (an invalid bool, say, is
// then reported by UBSan).
template <class T>
std::uint64_t touch(const io::reader& r, const io::tensor_entry& e) {
  const dp::tensor<T> t = r.read<T>(e);
  std::uint64_t h = static_cast<std::uint64_t>(t.numel());
  const T* p = t.data();
  for (dp::index_t i = 0; i < t.numel(); ++i) {
    if constexpr (std::is_floating_point_v<T>) {
      h = h * 31 + (p[i] == p[i] ? 1 : 0);  // NaN-safe
    } else {
      h = h * 31 + static_cast<std::uint64_t>(p[i]);
    }
  }
  return h;
}

std::uint64_t read_entry(const io::reader& r, const io::tensor_entry& e) {
  switch (e.type) {
    case io::dtype::f32:
      return touch<float>(r, e);
    case io::dtype::f64:
      return touch<double>(r, e);
    case io::dtype::i64:
      return touch<std::int64_t>(r, e);
    case io::dtype::i32:
      return touch<std::int32_t>(r, e);
    case io::dtype::u8:
      return touch<std::uint8_t>(r, e);
    case io::dtype::boolean:
      return touch<bool>(r, e);
  }
  return 0;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static tiny model;
  volatile std::uint64_t sink = 0;
  try {
    const io::reader r(std::string(reinterpret_cast<const char*>(data), size), "fuzz.safetensors");
    for (const auto& e : r.info().tensors) {
      sink = sink + read_entry(r, e);
      // A wrong dtype is refused, never reinterpreted.
      try {
        if (e.type == io::dtype::f32) {
          (void)r.read<double>(e);
        } else {
          (void)r.read<float>(e);
        }
        __builtin_trap();  // read<T> of another dtype must throw
      } catch (const dp::io_error&) {
      }
    }
    r.verify();
    // What dp::io::load does after reading the file.
    io::detail::check_against(model, r.info(), r.source(), "");
    io::detail::staged_tensors(model, r, "").commit(model);
  } catch (const dp::error&) {
  }
  return 0;
}
