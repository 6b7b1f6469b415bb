#include <algorithm>
#include <set>

#include <doctest/doctest.h>

#include <dp/dp.hpp>

namespace data = dp::data;

namespace {
data::tensor_dataset<float, std::int64_t> numbered(dp::index_t n, dp::index_t width) {
  std::vector<float> x;
  std::vector<std::int64_t> y;
  for (dp::index_t i = 0; i < n; ++i) {
    for (dp::index_t j = 0; j < width; ++j) {
      x.push_back(static_cast<float>(i * 100 + j));
    }
    y.push_back(i);
  }
  return {dp::from_vector<float>(x, {n, width}), dp::from_vector<std::int64_t>(y)};
}
}  // namespace

TEST_CASE("tensor_dataset::get gathers the rows of the requested samples in order") {
  const auto d = numbered(10, 3);
  CHECK(d.size() == 10);
  CHECK(d.sample_size() == 3);
  const std::vector<dp::index_t> idx{7, 2, 9};
  const auto b = d.get(idx);
  CHECK(b.x.shape() == dp::shape{3, 3});
  CHECK(b.x.to_vector() == std::vector<float>{700, 701, 702, 200, 201, 202, 900, 901, 902});
  CHECK(b.y.to_vector() == std::vector<std::int64_t>{7, 2, 9});
  const std::vector<dp::index_t> bad{3, 10};
  CHECK_THROWS_WITH_AS(d.get(bad), doctest::Contains("sample 10 is outside [0, 10)"), dp::value_error);
}

TEST_CASE("a default-constructed tensor_dataset has no samples, and get() on it says so") {
  const data::tensor_dataset<float, std::int64_t> none;
  CHECK(none.size() == 0);
  // Its rank-0 shape took a batch size past its rank: a one-element batch of garbage.
  CHECK_THROWS_WITH_AS((void)none.get({}), doctest::Contains("holds no tensors (made by its default constructor)"),
                       dp::value_error);
}

TEST_CASE("tensor_dataset's fingerprint is the CRC-32 of its features' bytes and of its labels'") {
  // Expected values: Python's zlib.crc32 of struct.pack('<4f', 1, -2, 0.5, 3) and of
  // struct.pack('<2q', 7, -1), and of the features with 3.5 as the last value.
  const data::tensor_dataset<float, std::int64_t> d{dp::from_vector<float>({1.f, -2.f, 0.5f, 3.f}, {2, 2}),
                                                    dp::from_vector<std::int64_t>({7, -1})};
  CHECK(d.fingerprint() == 0x52d2be275524b355ull);
  const data::tensor_dataset<float, std::int64_t> other{dp::from_vector<float>({1.f, -2.f, 0.5f, 3.5f}, {2, 2}),
                                                        dp::from_vector<std::int64_t>({7, -1})};
  CHECK(other.fingerprint() == 0xc7569a855524b355ull);
  CHECK(data::tensor_dataset<float, std::int64_t>{}.fingerprint() == 0);
}

TEST_CASE("tensor_dataset rejects features and labels of different sample counts") {
  CHECK_THROWS_WITH_AS(
      (data::tensor_dataset<float, std::int64_t>(dp::zeros<float>({4, 2}), dp::zeros<std::int64_t>({5}))),
      doctest::Contains("features of shape {4, 2} and labels of shape {5}"), dp::shape_error);
}

TEST_CASE("permutation is a seeded shuffle: every index once, same seed same order, other seed other order") {
  const auto a = data::permutation(1000, 7, 0);
  const auto b = data::permutation(1000, 7, 0);
  const auto c = data::permutation(1000, 8, 0);
  const auto e = data::permutation(1000, 7, 1);
  CHECK(a == b);
  CHECK(a != c);
  CHECK(a != e);
  std::vector<dp::index_t> sorted = a;
  std::sort(sorted.begin(), sorted.end());
  for (dp::index_t i = 0; i < 1000; ++i) {
    REQUIRE(sorted[static_cast<std::size_t>(i)] == i);
  }
  // Not the identity, and roughly uniform: the first position takes many values over seeds.
  std::set<dp::index_t> firsts;
  for (std::uint64_t s = 0; s < 200; ++s) {
    firsts.insert(data::permutation(10, s, 0)[0]);
  }
  CHECK(firsts.size() == 10);
}

TEST_CASE("split is disjoint, covers every sample, takes the fraction, and depends on the seed") {
  const auto d = numbered(101, 2);
  const auto [a, b] = data::split(d, 0.8, 3);
  CHECK(a.size() == 81);
  CHECK(b.size() == 20);
  std::vector<std::int64_t> all = a.labels().to_vector();
  const auto rest = b.labels().to_vector();
  all.insert(all.end(), rest.begin(), rest.end());
  std::sort(all.begin(), all.end());
  for (std::int64_t i = 0; i < 101; ++i) {
    REQUIRE(all[static_cast<std::size_t>(i)] == i);
  }
  // Rows travel with their labels.
  const auto x = a.features().to_vector();
  const auto y = a.labels().to_vector();
  for (std::size_t i = 0; i < y.size(); ++i) {
    REQUIRE(x[2 * i] == static_cast<float>(y[i] * 100));
  }
  const auto [a2, b2] = data::split(d, 0.8, 3);
  CHECK(a2.labels().to_vector() == y);
  const auto [a3, b3] = data::split(d, 0.8, 4);
  CHECK(a3.labels().to_vector() != y);
  CHECK_THROWS_WITH_AS(data::split(d, 1.0, 3), doctest::Contains("fraction must lie in (0, 1)"), dp::value_error);
  // A fraction that rounds one part to nothing is refused, not an empty training or test set.
  CHECK_THROWS_WITH_AS(data::split(d, 0.004, 3),
                       doctest::Contains("dp: split: a fraction 0.004 of 101 samples gives parts of 0 and 101 samples"),
                       dp::value_error);
  CHECK_THROWS_WITH_AS(data::split(d, 0.996, 3), doctest::Contains("gives parts of 101 and 0 samples"),
                       dp::value_error);
  CHECK(data::split(d, 0.005, 3).first.size() == 1);  // 0.505 rounds to one sample
}
