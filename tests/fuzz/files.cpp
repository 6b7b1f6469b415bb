// libFuzzer target: the loaders through their real file paths (open, read, gzip inflate, checkpoint
// load), on files made from the input. The first byte picks what the rest becomes:
//   0  written as data.csv.gz and loaded with csv_dataset (a raw, mostly broken, gzip stream);
//   1  gzip-compressed as CSV text, then damaged by the input's last bytes (cut short or one byte
//      flipped), written and loaded: inflate's error paths past a valid header;
//   2  edits to a valid checkpoint made at start (offset, byte pairs; then a length to cut to),
//      loaded with load_checkpoint into the trainer and optimizer it was saved from: a load that
//      fails must leave both exactly as they were (nothing torn);
//   3  written as an IDX file and read with read_idx.
// Only dp::error may escape the library; anything else, or a torn model, is a finding.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <string>
#include <unistd.h>
#include <vector>

#include <zlib.h>

#include <dp/data/csv.hpp>
#include <dp/data/idx.hpp>
#include <dp/io/checkpoint.hpp>
#include <dp/nn/layers/linear.hpp>
#include <dp/nn/layers/norm.hpp>
#include <dp/optim/sgd.hpp>

namespace {

namespace nn = dp::nn;

// Members and element type declared by hand: clang 14 cannot run dp's aggregate reflection.
struct tiny {
  using value_type = float;
  nn::linear<2, 3> fc;
  nn::batch_norm<3> bn;
  static void dp_members(auto& self, auto&& f) {
    f("fc", self.fc);
    f("bn", self.bn);
  }
  auto forward(auto x) const { return bn(fc(x)); }
};

std::string scratch(const char* name) { return "/tmp/dp_fuzz_files." + std::to_string(::getpid()) + "." + name; }

void write(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc)
      .write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::string gzip(const std::string& text) {
  z_stream z{};
  if (deflateInit2(&z, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
    __builtin_trap();
  }
  std::string out(deflateBound(&z, text.size()) + 32, '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(text.data()));
  z.avail_in = static_cast<uInt>(text.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  if (deflate(&z, Z_FINISH) != Z_STREAM_END) {
    __builtin_trap();
  }
  out.resize(z.total_out);
  deflateEnd(&z);
  return out;
}

struct run {
  nn::trainer<tiny> trainer{tiny{}};
  dp::optim::sgd<nn::trainer<tiny>> opt{trainer, {.lr = 0.1, .momentum = 0.9}};
};

/// The trainer's and optimizer's whole state, to compare before and after a load.
std::vector<float> snapshot(run& r) {
  std::vector<float> v = dp::detail::trainer_access::flat_params(r.trainer).to_vector();
  for (const auto& s : r.opt.state()) {
    const auto x = s.value.contiguous().to_vector();
    v.insert(v.end(), x.begin(), x.end());
  }
  v.push_back(static_cast<float>(r.opt.steps()));
  v.push_back(static_cast<float>(r.trainer.steps()));
  return v;
}

/// A valid checkpoint of a trainer after two steps (momentum buffers, counters and progress set).
const std::string& valid_checkpoint() {
  static const std::string bytes = [] {
    run r;
    const auto x = dp::from_vector<float>({0.5f, -1.f, 2.f, 0.25f, -0.5f, 1.f}).reshape({3, 2});
    const auto y = dp::from_vector<float>({1.f, 0.f, -1.f, 0.5f, 2.f, 0.f, 1.f, 1.f, -2.f}).reshape({3, 3});
    for (int i = 0; i < 2; ++i) {
      (void)r.trainer.backward(nn::mse_loss, x, y);
      r.opt.step();
    }
    const std::string path = scratch("seed.safetensors");
    dp::io::save_checkpoint(path, r.trainer, r.opt, {.epoch = 3, .batch = 7, .recipe = "batch=3 seed=1"});
    std::string b = dp::detail::read_bytes(path);
    std::remove(path.c_str());
    return b;
  }();
  return bytes;
}

void load_csv_gz(const std::string& bytes) {
  const std::string path = scratch("data.csv.gz");
  write(path, bytes);
  try {
    const auto d = dp::data::csv_dataset(path);
    if (d.size() <= 0) {
      __builtin_trap();  // a dataset is never empty
    }
  } catch (const dp::error&) {
  }
  std::remove(path.c_str());
}

void damaged_gzip(const std::uint8_t* p, std::size_t n) {
  if (n < 3) {
    return;
  }
  std::string z = gzip(std::string(reinterpret_cast<const char*>(p), n - 3));
  const std::size_t at = (static_cast<std::size_t>(p[n - 3]) << 8 | p[n - 2]) % (z.size() + 1);
  if (p[n - 1] & 1) {
    z.resize(at);  // cut short
  } else if (at < z.size()) {
    z[at] = static_cast<char>(z[at] ^ (p[n - 1] | 1));  // one byte flipped
  }
  load_csv_gz(z);
}

void damaged_checkpoint(const std::uint8_t* p, std::size_t n) {
  std::string bytes = valid_checkpoint();
  std::size_t i = 0;
  for (; i + 3 <= n && i < 3 * 8; i += 3) {  // up to 8 edits
    const std::size_t at = (static_cast<std::size_t>(p[i]) << 8 | p[i + 1]) % bytes.size();
    bytes[at] = static_cast<char>(p[i + 2]);
  }
  if (i + 2 <= n) {
    bytes.resize((static_cast<std::size_t>(p[i]) << 8 | p[i + 1]) % (bytes.size() + 1));
  }
  const std::string path = scratch("ckpt.safetensors");
  write(path, bytes);
  static run r;  // one run for every input: a failed load must leave it as it was
  const std::vector<float> before = snapshot(r);
  try {
    (void)dp::io::load_checkpoint(path, r.trainer, r.opt);
    const std::vector<float> after = snapshot(r);
    if (after.size() != before.size()) {
      __builtin_trap();
    }
  } catch (const dp::error&) {
    const std::vector<float> after = snapshot(r);
    for (std::size_t k = 0; k < before.size(); ++k) {
      if (!(after[k] == before[k] || (after[k] != after[k] && before[k] != before[k]))) {
        __builtin_trap();  // a failed load changed the model or the optimizer
      }
    }
  }
  std::remove(path.c_str());
}

void load_idx(const std::string& bytes) {
  const std::string path = scratch("images-idx3-ubyte");
  write(path, bytes);
  try {
    const dp::tensor<float> t = dp::data::read_idx(path);
    if (t.rank() < 1) {
      __builtin_trap();
    }
  } catch (const dp::error&) {
  }
  std::remove(path.c_str());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* bytes, std::size_t size) {
  if (size == 0) {
    return 0;
  }
  const std::uint8_t* p = bytes + 1;
  const std::size_t n = size - 1;
  switch (bytes[0] % 4) {
    case 0:
      load_csv_gz(std::string(reinterpret_cast<const char*>(p), n));
      break;
    case 1:
      damaged_gzip(p, n);
      break;
    case 2:
      damaged_checkpoint(p, n);
      break;
    default:
      load_idx(std::string(reinterpret_cast<const char*>(p), n));
      break;
  }
  return 0;
}
