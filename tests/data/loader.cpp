#include <algorithm>
#include <atomic>
#include <cstddef>
#include <iterator>
#include <limits>
#include <ranges>
#include <span>
#include <stdexcept>
#include <thread>
#include <vector>

#include <doctest/doctest.h>

#include <dp/dp.hpp>

namespace data = dp::data;

namespace {
data::tensor_dataset<float, std::int64_t> numbered(dp::index_t n) {
  std::vector<float> x;
  std::vector<std::int64_t> y;
  for (dp::index_t i = 0; i < n; ++i) {
    x.push_back(static_cast<float>(i));
    x.push_back(static_cast<float>(-i));
    y.push_back(i);
  }
  return {dp::from_vector<float>(x, {n, 2}), dp::from_vector<std::int64_t>(y)};
}

template <class L>
std::vector<std::vector<std::int64_t>> batches_of(const L& l, std::int64_t epoch, dp::index_t first = 0) {
  std::vector<std::vector<std::int64_t>> out;
  for (auto [x, y] : l.epoch(epoch, first)) {
    const auto labels = y.to_vector();
    const auto feats = x.to_vector();
    for (std::size_t i = 0; i < labels.size(); ++i) {
      REQUIRE(feats[2 * i] == static_cast<float>(labels[i]));  // rows stay with their labels
    }
    out.push_back(labels);
  }
  return out;
}

std::vector<std::int64_t> flat(const std::vector<std::vector<std::int64_t>>& b) {
  std::vector<std::int64_t> v;
  for (const auto& x : b) {
    v.insert(v.end(), x.begin(), x.end());
  }
  return v;
}

/// A dataset that is not a tensor_dataset: the loader needs only size() and get().
struct squares {
  dp::index_t size() const { return 10; }
  data::batch<float, std::int64_t> get(std::span<const dp::index_t> idx) const {
    std::vector<float> x;
    std::vector<std::int64_t> y;
    for (auto i : idx) {
      if (i == 7 && fail) {
        throw dp::value_error("dp: squares: sample 7 is unreadable");
      }
      x.push_back(static_cast<float>(i * i));
      y.push_back(i);
    }
    return {dp::from_vector<float>(x), dp::from_vector<std::int64_t>(y)};
  }
  bool fail = false;
};
static_assert(data::dataset<squares>);
}  // namespace

TEST_CASE("without shuffling batches come in order; the last one is partial unless drop_last") {
  const data::loader keep{numbered(10), {.batch = 4}};
  CHECK(keep.batches() == 3);
  CHECK(batches_of(keep, 0) == std::vector<std::vector<std::int64_t>>{{0, 1, 2, 3}, {4, 5, 6, 7}, {8, 9}});
  const data::loader drop{numbered(10), {.batch = 4, .drop_last = true}};
  CHECK(drop.batches() == 2);
  CHECK(batches_of(drop, 0) == std::vector<std::vector<std::int64_t>>{{0, 1, 2, 3}, {4, 5, 6, 7}});
  // Fewer samples than one batch: drop_last would leave every epoch empty, a loop that learns nothing.
  CHECK_THROWS_WITH_AS((data::loader{numbered(3), {.batch = 4, .drop_last = true}}),
                       doctest::Contains("use a batch of at most 3 or drop_last = false"), dp::value_error);
  CHECK(data::loader{numbered(4), {.batch = 4, .drop_last = true}}.batches() == 1);
}

TEST_CASE("a loader over an empty dataset is refused: every epoch would yield no batch") {
  // It was accepted and gave 0 batches per epoch: a training loop that ran and learned nothing.
  const auto refused = [](auto dataset, data::loader_options o) {
    CHECK_THROWS_WITH_AS((data::loader{dataset, o}),
                         "dp: loader: the dataset's size() is 0; expected a count of 1 or more samples (with none, "
                         "every epoch yields no batch)",
                         dp::value_error);
  };
  for (const bool drop_last : {false, true}) {
    CAPTURE(drop_last);
    refused(numbered(0), {.batch = 4, .drop_last = drop_last});
    refused(data::tensor_dataset<float, std::int64_t>{}, {.batch = 4, .drop_last = drop_last});
  }
  CHECK(data::loader{numbered(1), {.batch = 4}}.batches() == 1);  // one sample is enough
}

TEST_CASE("the shuffled order is a function of (seed, epoch): every sample once per epoch, nothing to reset") {
  const data::loader a{numbered(103), {.batch = 8, .shuffle = true, .seed = 5}};
  const data::loader b{numbered(103), {.batch = 8, .shuffle = true, .seed = 5}};
  const data::loader other{numbered(103), {.batch = 8, .shuffle = true, .seed = 6}};
  const auto e0 = batches_of(a, 0), e1 = batches_of(a, 1);
  CHECK(e0.size() == 13);
  CHECK(e0.back().size() == 103 % 8);
  CHECK(batches_of(a, 0) == e0);  // asking again gives the same epoch
  CHECK(batches_of(b, 1) == e1);  // another loader with the same seed agrees, epochs in any order
  CHECK(e0 != e1);
  CHECK(batches_of(other, 0) != e0);
  for (const auto& e : {e0, e1}) {
    auto v = flat(e);
    std::sort(v.begin(), v.end());
    for (std::int64_t i = 0; i < 103; ++i) {
      REQUIRE(v[static_cast<std::size_t>(i)] == i);
    }
  }
}

TEST_CASE("a failure in the very first batch a prefetching epoch makes is an error the loop sees, not an abort") {
  // The iterator's constructor waits for its first batch: a throw there used to leave the prefetching
  // thread joinable in an object whose destructor never runs (std::terminate).
  const data::loader bad{squares{.fail = true}, {.batch = 8, .prefetch = 2}};
  auto first = [&] {
    for (auto [x, y] : bad.epoch(0)) {
      (void)x;
    }
  };
  CHECK_THROWS_WITH_AS(first(), "dp: squares: sample 7 is unreadable", dp::value_error);
  const data::loader resumed{squares{.fail = true}, {.batch = 3, .prefetch = 2}};
  auto from_batch_2 = [&] {  // batch 2 holds samples 6, 7 and 8
    for (auto [x, y] : resumed.epoch(0, 2)) {
      (void)x;
    }
  };
  CHECK_THROWS_WITH_AS(from_batch_2(), "dp: squares: sample 7 is unreadable", dp::value_error);
}

TEST_CASE("a dataset that reports a negative size is refused by name, not by the allocator") {
  struct broken : squares {
    dp::index_t size() const { return -1; }
  };
  static_assert(data::dataset<broken>);
  CHECK_THROWS_WITH_AS(data::loader<broken>(broken{}),
                       doctest::Contains("loader: the dataset's size() is -1; expected a count of 1 or more samples"),
                       dp::value_error);
  struct wrapped : squares {  // a std::size_t that wrapped past 0
    std::size_t size() const { return static_cast<std::size_t>(-1); }
  };
  CHECK_THROWS_WITH_AS(data::loader<wrapped>(wrapped{}),
                       doctest::Contains("size() is 18446744073709551615; expected a count of 1 or more"),
                       dp::value_error);
  CHECK_THROWS_WITH_AS((void)data::permutation(-1, 0, 0), doctest::Contains("n must be 0 or more, got -1"),
                       dp::value_error);
}

TEST_CASE("a dataset whose size() is a std::size_t, or whose get() returns a reference, is loaded like any other") {
  // The concept accepts both; the loader did not compile for them (a narrowing in its agreement
  // list; an optional of a reference in its prefetch ring).
  struct sized_by_vector {
    std::vector<std::int64_t> v{3, 1, 4, 1, 5};
    std::size_t size() const { return v.size(); }
    data::batch<float, std::int64_t> get(std::span<const dp::index_t> idx) const {
      std::vector<std::int64_t> y;
      for (auto i : idx) {
        y.push_back(v[static_cast<std::size_t>(i)]);
      }
      return {dp::cast<float>(dp::from_vector(y)), dp::from_vector(y)};
    }
  };
  static_assert(data::dataset<sized_by_vector>);
  std::vector<std::int64_t> seen;
  const data::loader<sized_by_vector> by_vector{sized_by_vector{}, {.batch = 2}};
  for (auto [x, y] : by_vector.epoch(0)) {
    const auto labels = y.to_vector();
    seen.insert(seen.end(), labels.begin(), labels.end());
  }
  CHECK(seen == std::vector<std::int64_t>{3, 1, 4, 1, 5});

  struct by_reference : squares {
    data::batch<float, std::int64_t> held{dp::from_vector<float>({2.f}), dp::from_vector<std::int64_t>({1})};
    const data::batch<float, std::int64_t>& get(std::span<const dp::index_t>) const { return held; }
  };
  static_assert(data::dataset<by_reference>);
  for (const int prefetch : {0, 2}) {
    int batches = 0;
    const data::loader<by_reference> l{by_reference{}, {.batch = 5, .prefetch = prefetch}};
    for (auto [x, y] : l.epoch(0)) {
      CHECK(y.to_vector() == std::vector<std::int64_t>{1});
      ++batches;
    }
    CHECK(batches == 2);
  }
}

TEST_CASE("one batch of the whole dataset may be asked for with the largest batch size") {
  const auto most = std::numeric_limits<dp::index_t>::max();  // batches() once overflowed n + batch - 1
  const data::loader whole{numbered(10), {.batch = most}};
  CHECK(whole.batches() == 1);
  CHECK(batches_of(whole, 0) == std::vector<std::vector<std::int64_t>>{{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}});
  // drop_last would drop all ten: no epoch would hold a batch.
  CHECK_THROWS_WITH_AS((data::loader{numbered(10), {.batch = most, .drop_last = true}}),
                       doctest::Contains("drop_last with 10 samples and batch 9223372036854775807 drops every sample"),
                       dp::value_error);
  // The share arithmetic behind rank shares takes the same extremes, and refuses what has no answer.
  CHECK(data::aligned_part(10, 0, 1, most) == std::pair<dp::index_t, dp::index_t>{0, 10});
  CHECK(data::aligned_part(10, 1, 2, most) == std::pair<dp::index_t, dp::index_t>{10, 10});
  CHECK(data::aligned_part(10, 1, 3, 4) == std::pair<dp::index_t, dp::index_t>{4, 8});
  CHECK_THROWS_WITH_AS((void)data::even_part(10, 0, 0), doctest::Contains("parts >= 1"), dp::value_error);
  CHECK_THROWS_WITH_AS((void)data::aligned_part(10, 0, 2, 0), doctest::Contains("unit must be positive"),
                       dp::value_error);
}

TEST_CASE("an epoch is a C++20 view of input iterators: std::ranges algorithms and views take it") {
  const data::loader l{numbered(10), {.batch = 4, .prefetch = 2}};
  using range = decltype(l.epoch(0));
  static_assert(std::ranges::view<range> && std::ranges::input_range<range>);
  static_assert(std::input_iterator<std::ranges::iterator_t<range>>);
  std::vector<std::vector<std::int64_t>> first_two;
  for (const auto& b : l.epoch(0) | std::views::take(2)) {
    first_two.push_back(b.y.to_vector());
  }
  CHECK(first_two == std::vector<std::vector<std::int64_t>>{{0, 1, 2, 3}, {4, 5, 6, 7}});
  CHECK(std::ranges::distance(l.epoch(0, 1)) == 2);
  // An iterator moves (its prefetching thread stays with the batches it makes).
  auto it = l.epoch(0).begin();
  auto moved = std::move(it);
  CHECK((*moved).y.to_vector() == std::vector<std::int64_t>{0, 1, 2, 3});
  moved++;
  CHECK(moved.position() == 1);
  CHECK((*moved).y.to_vector() == std::vector<std::int64_t>{4, 5, 6, 7});
}

TEST_CASE("resuming at batch k of an epoch gives the rest of that epoch; prefetching changes nothing") {
  const data::loader pre{numbered(50), {.batch = 6, .shuffle = true, .seed = 2, .prefetch = 3}};
  const data::loader none{numbered(50), {.batch = 6, .shuffle = true, .seed = 2, .prefetch = 0}};
  const auto all = batches_of(pre, 4);
  CHECK(batches_of(none, 4) == all);
  const auto rest = batches_of(pre, 4, 5);
  CHECK(rest == std::vector<std::vector<std::int64_t>>(all.begin() + 5, all.end()));
  CHECK(pre.epoch(4, 5).size() == static_cast<dp::index_t>(all.size()) - 5);
  CHECK(batches_of(pre, 4, pre.batches()).empty());
  CHECK_THROWS_WITH_AS(pre.epoch(4, pre.batches() + 1), doctest::Contains("first batch 10 is outside [0, 9]"),
                       dp::value_error);
}

TEST_CASE("a negative epoch is refused when it is asked for, not at the first checkpoint that records it") {
  const data::loader l{numbered(50), {.batch = 6, .shuffle = true, .seed = 2}};
  CHECK_THROWS_WITH_AS(l.epoch(-1), doctest::Contains("dp: loader: epoch -1 is negative; epochs count from 0"),
                       dp::value_error);
  CHECK_THROWS_WITH_AS((void)l.order(-3), doctest::Contains("epoch -3 is negative"), dp::value_error);
  CHECK(l.order(0).size() == 50);
}

TEST_CASE("leaving an epoch early stops the prefetching thread; a failing dataset's error reaches the loop") {
  const data::loader l{numbered(1000), {.batch = 10, .shuffle = true, .seed = 1, .prefetch = 4}};
  for (int rep = 0; rep < 20; ++rep) {
    int seen = 0;
    for (auto [x, y] : l.epoch(rep)) {
      if (++seen == 3) {
        break;
      }
    }
    CHECK(seen == 3);
  }
  const data::loader bad{squares{.fail = true}, {.batch = 3, .prefetch = 2}};
  std::vector<std::int64_t> got;
  auto run = [&] {
    for (auto [x, y] : bad.epoch(0)) {
      for (auto v : y.to_vector()) {
        got.push_back(v);
      }
    }
  };
  CHECK_THROWS_WITH_AS(run(), "dp: squares: sample 7 is unreadable", dp::value_error);
  CHECK(got == std::vector<std::int64_t>{0, 1, 2, 3, 4, 5});  // the batches before the failing one arrived
  const data::loader good{squares{}, {.batch = 4}};
  std::vector<float> xs;
  for (auto [x, y] : good.epoch(0)) {
    for (auto v : x.to_vector()) {
      xs.push_back(v);
    }
  }
  CHECK(xs == std::vector<float>{0, 1, 4, 9, 16, 25, 36, 49, 64, 81});
}

TEST_CASE("loader options are checked") {
  CHECK_THROWS_WITH_AS((data::loader{numbered(4), {.batch = 0}}), doctest::Contains("batch must be positive, got 0"),
                       dp::value_error);
  CHECK_THROWS_WITH_AS((data::loader{numbered(4), {.prefetch = -1}}), doctest::Contains("prefetch must lie in [0, 64]"),
                       dp::value_error);
}
