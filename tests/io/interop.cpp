// Interop with PyTorch through safetensors (references made by tests/reference/make_interop.py).
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>

#include <doctest/doctest.h>

#include <dp/dp.hpp>

#include "../support/reference_file.hpp"
#include "../support/scratch.hpp"

namespace nn = dp::nn;

namespace {
// PyTorch's nn.Sequential(Linear(64, 32), ReLU(), Linear(32, 10)), in float64.
using mlp = nn::sequential<nn::linear<64, 32, double>, nn::relu, nn::linear<32, 10, double>>;

const std::string dir = DP_TEST_SOURCE_DIR "/reference/";

std::vector<double> logits(const mlp& m, const dp::tensor<double>& x) {
  nn::trainer<mlp> t{m};
  t.eval();
  return dp::tensor<double>(t(x)).to_vector();
}
void close(const std::vector<double>& got, const std::vector<double>& want) {
  REQUIRE(got.size() == want.size());
  for (std::size_t i = 0; i < got.size(); ++i) {
    CHECK(got[i] == doctest::Approx(want[i]).epsilon(1e-12));
  }
}
}  // namespace

TEST_CASE("weights written by PyTorch load into dp and give PyTorch's logits") {
  const auto ref = dp_test::read_reference(dir + "interop.txt");
  mlp m{};
  dp::io::load(dir + "interop_torch.safetensors", m);
  close(logits(m, ref.at("x").as<double>()), ref.at("torch_logits").values);
}

TEST_CASE("weights written by dp load into PyTorch and give dp's logits") {
  nn::manual_seed(7);
  const mlp m{};
  const std::string fresh = dp_test::scratch_path("interop.safetensors");
  dp::io::save(fresh, m);
  if (const char* out = std::getenv("DP_WRITE_INTEROP")) {  // make_interop.py asks for the file
    dp::io::save(out, m);
    return;
  }
  // The committed file is the one PyTorch read; dp still writes it byte for byte.
  CHECK(dp_test::bytes_of(fresh) == dp_test::bytes_of(dir + "interop_dp.safetensors"));
  const auto ref = dp_test::read_reference(dir + "interop.txt");
  close(logits(m, ref.at("x").as<double>()), ref.at("dp_file_logits").values);
  std::filesystem::remove(fresh);
}
