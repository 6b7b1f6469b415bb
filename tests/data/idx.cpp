#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <unistd.h>

#include <doctest/doctest.h>

#include <dp/dp.hpp>

namespace data = dp::data;

namespace {
/// An IDX file: magic (0, 0, type, dims), big-endian dimensions, then the payload.
std::string idx(unsigned char type, std::vector<std::uint32_t> dims, const std::string& payload) {
  std::string s{'\0', '\0', static_cast<char>(type), static_cast<char>(dims.size())};
  for (std::uint32_t d : dims) {
    for (int shift = 24; shift >= 0; shift -= 8) {
      s += static_cast<char>((d >> shift) & 0xff);
    }
  }
  return s + payload;
}
}  // namespace

TEST_CASE("parse_idx reads unsigned bytes, signed shorts and big-endian floats with their shape") {
  const auto u8 = data::parse_idx(idx(0x08, {2, 3}, std::string("\x00\x01\x02\x7f\x80\xff", 6)));
  CHECK(u8.shape() == dp::shape{2, 3});
  CHECK(u8.to_vector() == std::vector<float>{0, 1, 2, 127, 128, 255});
  const auto i16 = data::parse_idx(idx(0x0B, {2}, std::string("\xff\xfe\x01\x00", 4)));
  CHECK(i16.to_vector() == std::vector<float>{-2, 256});
  const auto f32 = data::parse_idx(idx(0x0D, {1}, std::string("\x3f\xc0\x00\x00", 4)));  // 1.5f big-endian
  CHECK(f32.to_vector() == std::vector<float>{1.5f});
}

TEST_CASE("malformed IDX names the offset and what was expected") {
  CHECK_THROWS_WITH_AS(data::parse_idx(std::string("\0\0", 2), "a.idx"), doctest::Contains("a.idx: truncated: 2 bytes"),
                       dp::io_error);
  CHECK_THROWS_WITH_AS(data::parse_idx(std::string("\1\0\x08\x01", 4), "a.idx"),
                       doctest::Contains("a.idx, offset 0: not an IDX file"), dp::io_error);
  CHECK_THROWS_WITH_AS(data::parse_idx(idx(0x07, {1}, "x"), "a.idx"),
                       doctest::Contains("offset 2: unknown IDX element type 0x7"), dp::io_error);
  CHECK_THROWS_WITH_AS(data::parse_idx(idx(0x08, {}, ""), "a.idx"), doctest::Contains("offset 3: 0 dimensions"),
                       dp::io_error);
  CHECK_THROWS_WITH_AS(data::parse_idx(idx(0x08, {2, 3}, "").substr(0, 9), "a.idx"),
                       doctest::Contains("truncated header: 9 bytes, expected 12"), dp::io_error);
  CHECK_THROWS_WITH_AS(data::parse_idx(idx(0x08, {2, 3}, "abcd"), "a.idx"),
                       doctest::Contains("announces 6 bytes of data at offset 12 but only 4 follow"), dp::io_error);
  CHECK_THROWS_WITH_AS(data::parse_idx(idx(0x08, {65536, 65536, 65536}, ""), "a.idx"),
                       doctest::Contains("implausibly large"), dp::io_error);
  // Bytes past the data: a wrong header (a labels file read with {1}) must not load a prefix.
  CHECK_THROWS_WITH_AS(data::parse_idx(idx(0x08, {1}, "\x07\x03\x05\x09"), "a.idx"),
                       doctest::Contains("a.idx: 3 bytes follow the data: the header (shape {1}) announces 1 bytes at "
                                         "offset 8, so the file should end at offset 9"),
                       dp::io_error);
}

TEST_CASE("IDX values a float cannot hold are refused, naming the element and its offset") {
  // Big-endian float NaN and +inf, a double of 1e300 (beyond float), an int32 of 2^24 + 1 (would round).
  CHECK_THROWS_WITH_AS(data::parse_idx(idx(0x0D, {2}, std::string("\x3f\xc0\x00\x00\x7f\xc0\x00\x00", 8)), "a.idx"),
                       doctest::Contains("a.idx, offset 12: element 1 is nan; dp reads IDX values as floats"),
                       dp::io_error);
  CHECK_THROWS_WITH_AS(data::parse_idx(idx(0x0D, {1}, std::string("\x7f\x80\x00\x00", 4)), "a.idx"),
                       doctest::Contains("offset 8: element 0 is inf"), dp::io_error);
  CHECK_THROWS_WITH_AS(data::parse_idx(idx(0x0E, {1}, std::string("\x7e\x37\xe4\x3c\x88\x00\x75\x9c", 8)), "a.idx"),
                       doctest::Contains("element 0 is 1e+300"), dp::io_error);
  CHECK_THROWS_WITH_AS(data::parse_idx(idx(0x0C, {2}, std::string("\x00\x00\x00\x05\x01\x00\x00\x01", 8)), "a.idx"),
                       doctest::Contains("offset 12: element 1 is 16777217"), dp::io_error);
  // At the edges: 2^24 and -2^24 as int32, and a double that rounds to a float.
  const auto i32 = data::parse_idx(idx(0x0C, {2}, std::string("\x01\x00\x00\x00\xff\x00\x00\x00", 8)));
  CHECK(i32.to_vector() == std::vector<float>{16777216.f, -16777216.f});
  const auto f64 = data::parse_idx(idx(0x0E, {1}, std::string("\x3f\xb9\x99\x99\x99\x99\x99\x9a", 8)));  // 0.1
  CHECK(f64.to_vector() == std::vector<float>{0.1f});
}

TEST_CASE("mnist_dataset reads the four files (plain or .gz) and says what is missing") {
  // Per process: two test runs on one machine (a sanitizer build beside a release build) must not share it.
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("dp_test_mnist_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  std::string pixels;
  for (int i = 0; i < 2 * 28 * 28; ++i) {
    pixels += static_cast<char>(i % 256);
  }
  auto put = [&](const std::string& name, const std::string& bytes) {
    std::ofstream(dir / name, std::ios::binary) << bytes;
  };
  put("t10k-images-idx3-ubyte", idx(0x08, {2, 28, 28}, pixels));
  put("t10k-labels-idx1-ubyte", idx(0x08, {2}, std::string("\x07\x03", 2)));
  const auto test = data::mnist_dataset(dir.string(), false);
  CHECK(test.features().shape() == dp::shape{2, 784});
  CHECK(test.labels().to_vector() == std::vector<std::int64_t>{7, 3});
  CHECK(test.features()[0][255].item() == doctest::Approx(1.0));
  CHECK(test.features()[1][0].item() == doctest::Approx(16.0 / 255));  // 784 % 256 = 16
  // Every byte b gives b / 255 in float, torchvision's ToTensor value, bit for bit.
  const std::vector<float> first = test.features()[0].to_vector();
  for (int b = 0; b < 256; ++b) {
    CAPTURE(b);
    CHECK(first[static_cast<std::size_t>(b)] == static_cast<float>(b) / 255.f);
  }

  CHECK_THROWS_WITH_AS(data::mnist_dataset(dir.string(), true),
                       doctest::Contains("train-images-idx3-ubyte (or train-images-idx3-ubyte.gz) was not found"),
                       dp::io_error);
  put("t10k-labels-idx1-ubyte", idx(0x08, {3}, std::string("\x07\x03\x01", 3)));
  const std::string disagree = "t10k-images-idx3-ubyte holds images of shape {2, 28, 28} and " +
                               (dir / "t10k-labels-idx1-ubyte").string() + " labels of shape {3}";
  CHECK_THROWS_WITH_AS(data::mnist_dataset(dir.string(), false), doctest::Contains(disagree.c_str()), dp::io_error);
  // Float labels (IDX type 0x0D, big-endian): a NaN or 2.5 has no class; converting it was undefined.
  put("t10k-labels-idx1-ubyte", idx(0x0D, {2}, std::string("\x40\xE0\x00\x00\x7F\xC0\x00\x00", 8)));  // 7, NaN
  CHECK_THROWS_WITH_AS(data::mnist_dataset(dir.string(), false),
                       doctest::Contains("t10k-labels-idx1-ubyte, offset 12: element 1 is nan"), dp::io_error);
  put("t10k-labels-idx1-ubyte", idx(0x0D, {2}, std::string("\x40\xE0\x00\x00\x40\x20\x00\x00", 8)));  // 7, 2.5
  CHECK_THROWS_WITH_AS(data::mnist_dataset(dir.string(), false),
                       doctest::Contains("t10k-labels-idx1-ubyte: label 1 is 2.5"), dp::io_error);

  // Images that are not 28 x 28 bytes, or none: the dataset promises [N, 784] in [0, 1].
  put("t10k-labels-idx1-ubyte", idx(0x08, {0}, ""));
  put("t10k-images-idx3-ubyte", idx(0x08, {0, 28, 28}, ""));
  CHECK_THROWS_WITH_AS(data::mnist_dataset(dir.string(), false),
                       doctest::Contains("have shape {0, 28, 28}, expected {N, 28, 28} with N > 0"), dp::io_error);
  put("t10k-labels-idx1-ubyte", idx(0x08, {2}, std::string("\x07\x03", 2)));
  put("t10k-images-idx3-ubyte", idx(0x08, {2, 14, 56}, pixels));
  CHECK_THROWS_WITH_AS(data::mnist_dataset(dir.string(), false), doctest::Contains("have shape {2, 14, 56}"),
                       dp::io_error);
  std::string shorts;  // 0x0B images: pixel 784 (image 1) is 256
  for (int i = 0; i < 2 * 28 * 28; ++i) {
    shorts += std::string{'\0', static_cast<char>(i == 784 ? 0 : 9)};
    if (i == 784) {
      shorts[shorts.size() - 2] = '\1';
    }
  }
  put("t10k-images-idx3-ubyte", idx(0x0B, {2, 28, 28}, shorts));
  CHECK_THROWS_WITH_AS(data::mnist_dataset(dir.string(), false),
                       doctest::Contains("t10k-images-idx3-ubyte: pixel 784 (image 1, row 0, column 0) is 256, "
                                         "expected 0 to 255"),
                       dp::io_error);
  // Float images (0x0D) scaled to [0, 1] already: they would have been divided by 255 again.
  std::string floats(static_cast<std::size_t>(2 * 28 * 28 * 4), '\0');
  floats[4 * 5] = '\x3f';  // element 5: 0x3f000000 = 0.5
  put("t10k-images-idx3-ubyte", idx(0x0D, {2, 28, 28}, floats));
  CHECK_THROWS_WITH_AS(
      data::mnist_dataset(dir.string(), false),
      doctest::Contains("pixel 5 (image 0, row 0, column 5) is 0.5, expected 0 to 255, a whole number (a byte"),
      dp::io_error);
  // A file that is there but cannot be read gives the OS's reason, not "was not found".
  std::filesystem::create_symlink("train-images-idx3-ubyte", dir / "train-images-idx3-ubyte");  // a loop
  CHECK_THROWS_WITH_AS(data::mnist_dataset(dir.string(), true), doctest::Contains("symbolic links"), dp::io_error);
  std::filesystem::remove_all(dir);
}
