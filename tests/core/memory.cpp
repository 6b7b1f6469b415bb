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

// The pool side of a CUDA graph's capture (dp::cuda_graph), shown on a host pool: a replay writes
// every block the captured work used, so none may reach another tensor while the graph exists.
TEST_CASE("blocks a capture used stay its own until it closes, then return to the device") {
  const dp::device d = dp::cpu(1000);  // any host worker index has a pool, past 256 too
  const void* before_capture = nullptr;
  const void* made_in_capture = nullptr;
  {
    auto warm = dp::empty<float>({1000}, d);  // cached for the capture to take
    before_capture = warm.data();
  }
  auto older = dp::empty<float>({3000}, d);  // made before, given back during the capture
  const void* older_block = older.data();
  {
    dp::detail::capture_pool capture(d);
    {
      auto t = dp::empty<float>({1000}, d);
      CHECK(t.data() == before_capture);  // a cached block joins the capture: nothing new allocated
      made_in_capture = t.data();
    }
    auto again = dp::empty<float>({1000}, d);  // the capture reuses its own block: replays keep the order
    CHECK(again.data() == made_in_capture);
    older = dp::tensor<float>{};
    CHECK_THROWS_WITH_AS((void)dp::empty<float>({100000}, d), doctest::Contains("cannot be allocated while capturing"),
                         dp::device_error);
    CHECK_THROWS_WITH_AS(dp::empty_cache(d), doctest::Contains("while a CUDA graph is being captured"),
                         dp::device_error);
    capture.end_capture();
    auto after = dp::empty<float>({1000}, d);  // capture ended, graph alive: a new block, not the graph's
    CHECK(after.data() != made_in_capture);
    auto after_older = dp::empty<float>({3000}, d);
    CHECK(after_older.data() != older_block);
  }
  // The graph is gone: its blocks are the device's again.
  auto t1 = dp::empty<float>({3000}, d);
  CHECK(t1.data() == older_block);
}

TEST_CASE("emptying the cache while a graph keeps blocks leaves the cached count true, not wrapped past 2^64") {
  const dp::device d = dp::cpu(1002);
  { auto warm = dp::empty<float>({1000}, d); }
  std::size_t kept = 0;
  {
    dp::detail::capture_pool capture(d);
    { auto t = dp::empty<float>({1000}, d); }  // given back into the capture's own pool: still cached
    capture.end_capture();
    kept = dp::memory_usage(d).cached;
    CHECK(kept > 0);
    dp::empty_cache(d);  // frees the device's free blocks; the graph's stay
    CHECK(dp::memory_usage(d).cached == kept);
  }
  auto reused = dp::empty<float>({1000}, d);  // the graph's block, back to the device, taken again
  CHECK(dp::memory_usage(d).cached == 0);     // was 2^64 - 4096: set to 0, then the block subtracted
}

TEST_CASE("one capture at a time per device") {
  const dp::device d = dp::cpu(1001);
  dp::detail::capture_pool first(d);
  CHECK_THROWS_WITH_AS(dp::detail::capture_pool{d}, doctest::Contains("already being captured on cpu:1001"),
                       dp::runtime_error);
  first.end_capture();
  dp::detail::capture_pool second(d);
  second.end_capture();
}
