// IDX files (the MNIST format): a big-endian header (two zero bytes, a type byte, the number of
// dimensions, one 32-bit size per dimension) followed by the data. Truncated or malformed files are
// io_errors naming the file, the offset and what was expected.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <iomanip>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

#include <dp/core/error.hpp>
#include <dp/data/dataset.hpp>
#include <dp/data/gzip.hpp>
#include <dp/exec/factory.hpp>

namespace dp::inline DP_ABI::data {

namespace detail {
inline std::uint32_t be32(const unsigned char* p) {
  return (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) | (std::uint32_t{p[2]} << 8) | p[3];
}
inline std::size_t idx_type_size(unsigned type) {
  switch (type) {
    case 0x08:
    case 0x09:
      return 1;
    case 0x0B:
      return 2;
    case 0x0C:
    case 0x0D:
      return 4;
    case 0x0E:
      return 8;
    default:
      return 0;
  }
}
/// The element at `q` of an IDX file of `type`, exactly (a double holds every IDX type's values).
inline double idx_element(unsigned type, const unsigned char* q) {
  switch (type) {
    case 0x08:
      return q[0];
    case 0x09:
      return static_cast<std::int8_t>(q[0]);
    case 0x0B:
      return static_cast<std::int16_t>((q[0] << 8) | q[1]);
    case 0x0C:
      return static_cast<std::int32_t>(be32(q));
    case 0x0D: {
      const std::uint32_t b = be32(q);
      float f;
      std::memcpy(&f, &b, 4);
      return f;
    }
    default: {
      const std::uint64_t b = (std::uint64_t{be32(q)} << 32) | be32(q + 4);
      double f;
      std::memcpy(&f, &b, 8);
      return f;
    }
  }
}
}  // namespace detail

/// The values of an IDX file as floats, with its dimensions as the shape.
inline tensor<float> parse_idx(std::string_view bytes, std::string_view source = "<idx>") {
  const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
  DP_CHECK(bytes.size() >= 4, io_error, "dp: ", source, ": truncated: ", bytes.size(),
           " bytes, an IDX header needs at least 4");
  DP_CHECK(p[0] == 0 && p[1] == 0, io_error, "dp: ", source,
           ", offset 0: not an IDX file (the first two bytes must be 0)");
  const unsigned type = p[2], dims = p[3];
  const std::size_t esize = detail::idx_type_size(type);
  DP_CHECK(esize != 0, io_error, "dp: ", source, ", offset 2: unknown IDX element type 0x", std::hex, type,
           " (expected 0x08, 0x09, 0x0B, 0x0C, 0x0D or 0x0E)");
  DP_CHECK(dims >= 1 && dims <= max_rank, io_error, "dp: ", source, ", offset 3: ", dims, " dimensions (expected 1 to ",
           max_rank, ")");
  const std::size_t header = 4 + 4 * std::size_t{dims};
  DP_CHECK(bytes.size() >= header, io_error, "dp: ", source, ": truncated header: ", bytes.size(), " bytes, expected ",
           header, " for ", dims, " dimensions");
  dp::shape s;
  // `extent`, the product of the non-zero dimensions, is checked before it can overflow; it bounds
  // every stride and partial product, so a zero dimension cannot hide huge others.
  std::uint64_t count = 1, extent = 1;
  for (unsigned d = 0; d < dims; ++d) {
    const std::uint32_t n = detail::be32(p + 4 + 4 * d);
    s.push_back(static_cast<index_t>(n));
    DP_CHECK(n == 0 || extent <= (std::uint64_t{1} << 40) / n, io_error, "dp: ", source, ", offset ", 4 + 4 * d,
             ": dimensions ", s, " are implausibly large (the non-zero ones multiply to more than 2^40)");
    count *= n;
    extent *= n == 0 ? 1 : n;
  }
  const std::uint64_t need = count * esize;
  DP_CHECK(bytes.size() - header >= need, io_error, "dp: ", source, ": truncated: the header (shape ", s,
           ") announces ", need, " bytes of data at offset ", header, " but only ", bytes.size() - header, " follow");
  // Bytes past the data mean a wrong header (or two files joined): reading a prefix would be silent.
  DP_CHECK(bytes.size() - header == need, io_error, "dp: ", source, ": ", bytes.size() - header - need,
           " bytes follow the data: the header (shape ", s, ") announces ", need, " bytes at offset ", header,
           ", so the file should end at offset ", header + need);
  // Written in place: through a vector, a 4 GiB file of bytes (what a 4 MB gzip of zeros inflates
  // to) held its 16 GiB of floats twice.
  // The floats join the bytes, still held: past the memory this process may use the OOM killer
  // ended the process where this is an error naming the file (a 4 MB gzip inflates to 4 GiB of
  // bytes, 16 GiB of floats).
  const std::uint64_t memory = dp::detail::physical_memory(), floats = count * sizeof(float);
  DP_CHECK(memory == 0 || floats <= memory - std::min<std::uint64_t>(memory, bytes.size()), io_error, "dp: ", source,
           ": its ", count, " values (shape ", s, ") need ", floats, " bytes as floats besides its ", bytes.size(),
           " bytes, more than the memory this process may use (", memory, " bytes)");
  tensor<float> out = empty<float>(s);
  float* v = out.data();
  const unsigned char* d = p + header;
  for (std::uint64_t i = 0; i < count; ++i) {
    const double x = detail::idx_element(type, d + i * esize);
    // Bytes and shorts always fit; a float's NaN or infinity would poison training, a double beyond
    // float's range has no float (converting it is undefined), and an int32 a float cannot hold
    // exactly (some beyond 2^24 in magnitude) would round.
    DP_CHECK(type <= 0x0B || (std::isfinite(x) && std::fabs(x) <= std::numeric_limits<float>::max() &&
                              (type != 0x0C || static_cast<double>(static_cast<float>(x)) == x)),
             io_error, "dp: ", source, ", offset ", header + i * esize, ": element ", i, " is ", std::setprecision(10),
             x,
             "; dp reads IDX values as floats and expects finite numbers a float holds (an int32 exactly, as every "
             "one up to 2^24 in magnitude is)");
    v[i] = static_cast<float>(x);
  }
  return out;
}

/// Reads an IDX file (plain or gzip-compressed).
inline tensor<float> read_idx(const std::string& path) { return parse_idx(detail::read_file(path), path); }

/// MNIST from the four standard files in `dir` (train-images-idx3-ubyte, ... optionally .gz):
/// images as [N, 784] floats in [0, 1], labels as int64.
inline tensor_dataset<float, std::int64_t> mnist_dataset(const std::string& dir, bool train = true) {
  const std::string stem = train ? "train" : "t10k";
  auto find = [&](const std::string& name) {
    for (const std::string& candidate : {dir + "/" + name, dir + "/" + name + ".gz"}) {
      std::error_code ec;
      // Present, or not known to be absent (a permission or symlink-loop error sets ec): reading it
      // says why it cannot be read, where "not found" would hide the reason.
      if (std::filesystem::exists(candidate, ec) || ec) {
        return candidate;
      }
    }
    throw io_error(dp::detail::concat("dp: MNIST file ", name, " (or ", name, ".gz) was not found in '", dir,
                                      "'; dp downloads nothing: place the four IDX files there"));
  };
  const std::string images_path = find(stem + "-images-idx3-ubyte");
  const tensor<float> images = read_idx(images_path);
  const std::string labels_path = find(stem + "-labels-idx1-ubyte");
  const tensor<float> labels = read_idx(labels_path);
  DP_CHECK(images.rank() == 3 && labels.rank() == 1 && images.shape()[0] == labels.shape()[0], io_error,
           "dp: MNIST files disagree: ", images_path, " holds images of shape ", images.shape(), " and ", labels_path,
           " labels of shape ", labels.shape(), " (expected {N, 28, 28} and {N})");
  DP_CHECK(images.shape()[0] > 0 && images.shape()[1] == 28 && images.shape()[2] == 28, io_error, "dp: ", images_path,
           ": MNIST images have shape ", images.shape(), ", expected {N, 28, 28} with N > 0");
  // Pixels are bytes: another range would not scale to [0, 1], and a fraction is an image scaled
  // already (a float IDX file), which the division below would scale again.
  const float* px = images.data();
  for (index_t i = 0; i < images.numel(); ++i) {
    DP_CHECK(px[i] >= 0 && px[i] <= 255 && px[i] == std::floor(px[i]), io_error, "dp: ", images_path, ": pixel ", i,
             " (image ", i / 784, ", row ", i % 784 / 28, ", column ", i % 28, ") is ", px[i],
             ", expected 0 to 255, a whole number (a byte; this dataset scales the bytes to [0, 1] itself)");
  }
  // Labels become class indices: each must be a whole number (a NaN or 2.5 has no class, and
  // converting it to an integer is undefined).
  const auto values = labels.to_vector();
  for (std::size_t i = 0; i < values.size(); ++i) {
    DP_CHECK(std::isfinite(values[i]) && values[i] >= 0 && values[i] == std::floor(values[i]) && values[i] < 1e9f,
             io_error, "dp: ", labels_path, ": label ", i, " is ", values[i],
             ", expected a whole non-negative class index");
  }
  tensor<float> flat = images.reshape({images.shape()[0], -1});
  // In place (the images are not held twice), and a division, as torchvision's ToTensor: times the
  // rounded 1/255 was one unit in the last place off for 126 of the 256 bytes.
  flat /= 255.f;
  return {flat, labels.to<std::int64_t>()};
}

}  // namespace dp::inline DP_ABI::data
