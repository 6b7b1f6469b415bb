// Datasets: anything with a size that can fill a batch from a list of sample indices. A
// tensor_dataset holds features and labels in memory (what the CSV and IDX readers produce).
#pragma once

#include <cstdint>
#include <cstring>
#include <span>
#include <utility>
#include <vector>

#include <dp/core/crc32.hpp>
#include <dp/core/tensor.hpp>
#include <dp/exec/factory.hpp>
#include <dp/expr/random.hpp>

namespace dp::inline DP_ABI::data {

/// A batch: inputs and targets (binds as `auto [x, y] = batch`).
template <class X, class Y>
struct batch {
  tensor<X> x;
  tensor<Y> y;
};

/// What a loader needs: a size, and filling a batch's rows from sample indices. A dataset may also
/// have `std::uint64_t fingerprint() const`, a checksum of its samples: ranks that shard it compare
/// theirs before training (a rank that loaded other data of the same size would train on it silently).
template <class D>
concept dataset = requires(const D& d, std::span<const index_t> idx) {
  { d.size() } -> std::convertible_to<index_t>;
  d.get(idx);
};

/// Features [N, ...] and labels [N] in host memory.
template <class X = float, class Y = std::int64_t>
class tensor_dataset {
 public:
  using batch_type = batch<X, Y>;

  tensor_dataset() = default;
  tensor_dataset(tensor<X> features, tensor<Y> labels) : x_(features.contiguous()), y_(labels.contiguous()) {
    DP_CHECK(x_.rank() >= 1 && y_.rank() == 1 && x_.shape()[0] == y_.shape()[0], shape_error,
             "dp: tensor_dataset: features of shape ", x_.shape(), " and labels of shape ", y_.shape(),
             " do not describe the same samples (expected [N, ...] and [N])");
    DP_CHECK(x_.device().is_cpu() && y_.device().is_cpu(), device_error,
             "dp: tensor_dataset keeps its samples in host memory");
  }

  index_t size() const noexcept { return y_.defined() ? y_.shape()[0] : 0; }
  const tensor<X>& features() const noexcept { return x_; }
  const tensor<Y>& labels() const noexcept { return y_; }
  /// Elements per sample.
  index_t sample_size() const noexcept { return size() ? x_.numel() / size() : 0; }
  /// The CRC-32 of the features' bytes (high 32 bits) and of the labels' (low 32 bits); 0 for a
  /// dataset that holds no tensors.
  std::uint64_t fingerprint() const {
    if (!x_.defined()) {
      return 0;
    }
    const auto crc = [](const auto& t) {
      return dp::detail::crc32_of(
          {reinterpret_cast<const char*>(t.data()), static_cast<std::size_t>(t.numel()) * sizeof(*t.data())});
    };
    return std::uint64_t{crc(x_)} << 32 | crc(y_);
  }

  /// The samples at `idx`, as new tensors (from the host pool: no system allocation once warm).
  batch_type get(std::span<const index_t> idx) const {
    DP_CHECK(x_.defined(), value_error,
             "dp: tensor_dataset: get() on a dataset that holds no tensors (made by its "
             "default constructor); make it from features and labels");
    dp::shape s = x_.shape();
    s[0] = static_cast<index_t>(idx.size());
    batch_type b{empty<X>(s), empty<Y>({static_cast<index_t>(idx.size())})};
    const index_t row = sample_size();
    for (std::size_t i = 0; i < idx.size(); ++i) {
      DP_CHECK(idx[i] >= 0 && idx[i] < size(), value_error, "dp: tensor_dataset: sample ", idx[i], " is outside [0, ",
               size(), ")");
      std::memcpy(b.x.data() + static_cast<index_t>(i) * row, x_.data() + idx[i] * row,
                  static_cast<std::size_t>(row) * sizeof(X));
      b.y.data()[i] = y_.data()[idx[i]];
    }
    return b;
  }

 private:
  tensor<X> x_;
  tensor<Y> y_;
};

/// A random permutation of [0, n) from (seed, stream): Fisher-Yates on a Philox stream.
inline std::vector<index_t> permutation(index_t n, std::uint64_t seed, std::uint64_t stream) {
  DP_CHECK(n >= 0, value_error, "dp: permutation: n must be 0 or more, got ", n);
  std::vector<index_t> p(static_cast<std::size_t>(n));
  for (index_t i = 0; i < n; ++i) {
    p[static_cast<std::size_t>(i)] = i;
  }
  dp::detail::philox_stream rng(seed, stream);
  for (index_t i = n - 1; i > 0; --i) {
    std::swap(p[static_cast<std::size_t>(i)],
              p[static_cast<std::size_t>(rng.below(static_cast<std::uint64_t>(i + 1)))]);
  }
  return p;
}

/// Splits a dataset into a random `fraction` and the rest (disjoint, covering every sample, each
/// part at least one: an empty part would train or evaluate on nothing without a word).
template <class X, class Y>
std::pair<tensor_dataset<X, Y>, tensor_dataset<X, Y>> split(const tensor_dataset<X, Y>& d, double fraction,
                                                            std::uint64_t seed) {
  DP_CHECK(fraction > 0 && fraction < 1, value_error, "dp: split: fraction must lie in (0, 1), got ", fraction);
  const index_t k = static_cast<index_t>(static_cast<double>(d.size()) * fraction + 0.5);
  DP_CHECK(k > 0 && k < d.size(), value_error, "dp: split: a fraction ", fraction, " of ", d.size(),
           " samples gives parts of ", k, " and ", d.size() - k,
           " samples; each part needs at least one (more data, or another fraction)");
  const auto p = permutation(d.size(), seed, 0x5EED5);
  const std::span<const index_t> all(p);
  const auto a = d.get(all.subspan(0, static_cast<std::size_t>(k)));
  const auto b = d.get(all.subspan(static_cast<std::size_t>(k)));
  return {tensor_dataset<X, Y>(a.x, a.y), tensor_dataset<X, Y>(b.x, b.y)};
}

}  // namespace dp::inline DP_ABI::data
