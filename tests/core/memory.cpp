#include <doctest/doctest.h>

#include <dp/dp.hpp>

TEST_CASE("size classes round up by at most a quarter") {
  for (std::size_t b : {1ul, 256ul, 257ul, 1000ul, 4096ul, 4097ul, 1ul << 20, (1ul << 20) + 1, 123456789ul}) {
    const int c = dp::detail::size_class_of(b);
    const std::size_t cap = dp::detail::size_class_bytes(c);
    CHECK(cap >= b);
    CHECK(cap <= std::max<std::size_t>(256, b + b / 4 + 1));
  }
}

TEST_CASE("a freed block is reused from the pool without a new allocation") {
  const dp::device d = dp::cpu(5);  // a worker pool of its own, so other tests do not interfere
  { auto t = dp::empty<float>({1000}, d); }
  const auto before = dp::counters();
  const auto stats_before = dp::memory_usage(d);
  {
    auto t = dp::empty<float>({1000}, d);
    CHECK(dp::memory_usage(d).in_use >= 4000);
  }
  const auto after = dp::counters();
  CHECK(after.allocations - before.allocations == 0);
  CHECK(after.pool_hits - before.pool_hits == 1);
  CHECK(dp::memory_usage(d).allocations == stats_before.allocations);
  CHECK(dp::memory_usage(d).in_use == stats_before.in_use);
}

TEST_CASE("empty_cache returns cached blocks and the peak can be reset") {
  const dp::device d = dp::cpu(6);
  { auto t = dp::empty<double>({1 << 16}, d); }
  CHECK(dp::memory_usage(d).cached >= (1 << 16) * sizeof(double));
  CHECK(dp::memory_usage(d).peak_in_use >= (1 << 16) * sizeof(double));
  dp::empty_cache(d);
  CHECK(dp::memory_usage(d).cached == 0);
  dp::reset_peak_memory(d);
  CHECK(dp::memory_usage(d).peak_in_use == dp::memory_usage(d).in_use);
}

TEST_CASE("adopted memory is released through its deleter when the last tensor goes") {
  static int released = 0;
  float* data = new float[4]{1, 2, 3, 4};
  {
    auto st = dp::detail::adopt(
        dp::cpu(), data, 4 * sizeof(float),
        [](void*, void* p) {
          delete[] static_cast<float*>(p);
          ++released;
        },
        nullptr);
    dp::tensor<float> t(st, 0, {2, 2}, {2, 1});
    auto view = t.t();
    CHECK(view.to_vector() == std::vector<float>{1, 3, 2, 4});
  }
  CHECK(released == 1);
}
