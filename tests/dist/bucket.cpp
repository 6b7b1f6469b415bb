#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <doctest/doctest.h>

#include <dp/dp.hpp>

namespace {
using dp::dist::bucket;

/// Parameters of the given sizes, laid out one after another as a trainer lays them out.
std::vector<dp::nn::param_entry> layout_of(const std::vector<dp::index_t>& sizes) {
  std::vector<dp::nn::param_entry> out;
  dp::index_t offset = 0;
  for (const auto n : sizes) {
    out.push_back({"p" + std::to_string(out.size()), offset, dp::shape{n}});
    offset += n;
  }
  return out;
}

std::vector<std::pair<dp::index_t, dp::index_t>> ranges(const std::vector<bucket>& buckets) {
  std::vector<std::pair<dp::index_t, dp::index_t>> out;
  for (const auto& b : buckets) {
    out.emplace_back(b.begin, b.end);
  }
  return out;
}
using ranges_t = std::vector<std::pair<dp::index_t, dp::index_t>>;
}  // namespace

TEST_CASE("buckets close once they reach their bytes, the first at first_bytes, and never split a parameter") {
  // float parameters of 3, 5, 2, 6 and 1 elements; the first bucket closes at 8 bytes, the others at 24.
  const auto b = dp::dist::make_buckets(layout_of({3, 5, 2, 6, 1}), 17, sizeof(float), 24, 8);
  CHECK(ranges(b) == ranges_t{{0, 3}, {3, 10}, {10, 16}, {16, 17}});
}

TEST_CASE("a parameter past max_elements is split into buckets of at most max_elements, in order") {
  // MPI counts a collective's elements in int: an embedding past 2^31-1 elements is reduced in
  // several buckets. Here the cap is 4 and buckets close at 40 bytes: the 10-element parameter's
  // bucket becomes 4 + 4 + 2, and the last bucket (3 + 3 elements) passes the cap too: 4 + 2.
  const auto b = dp::dist::make_buckets(layout_of({2, 10, 3, 3}), 18, sizeof(float), 40, 4, 4);
  CHECK(ranges(b) == ranges_t{{0, 2}, {2, 6}, {6, 10}, {10, 12}, {12, 16}, {16, 18}});
  // The default cap is MPI's: 2^31-1 elements, whatever the byte sizes asked for.
  const dp::index_t huge = dp::index_t{5} << 30;  // 5 x 2^30 elements: 20 GiB of float, never allocated
  const auto h = dp::dist::make_buckets(layout_of({huge}), huge, sizeof(float), std::size_t{1} << 40, 1 << 20);
  const dp::index_t cap = INT32_MAX;
  CHECK(ranges(h) == ranges_t{{0, cap}, {cap, 2 * cap}, {2 * cap, huge}});
}
