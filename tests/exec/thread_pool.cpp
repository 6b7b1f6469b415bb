#include <atomic>
#include <thread>
#include <vector>

#include <doctest/doctest.h>

#include <dp/exec/thread_pool.hpp>

TEST_CASE("parallel_for covers every index exactly once") {
  for (dp::index_t n : {1, 7, 1000, 100003}) {
    for (dp::index_t grain : {1, 16, 5000}) {
      std::vector<std::atomic<int>> hits(static_cast<std::size_t>(n));
      dp::detail::parallel_for(n, grain, [&](dp::index_t b, dp::index_t e) {
        for (dp::index_t i = b; i < e; ++i) {
          hits[static_cast<std::size_t>(i)]++;
        }
      });
      int bad = 0;
      for (auto& h : hits) {
        bad += h.load() != 1;
      }
      CHECK(bad == 0);
    }
  }
}

TEST_CASE("a thread's budget limits it to one part; other threads' loops are unaffected") {
  std::atomic<int> parts{0};
  {
    dp::thread_budget_scope one(1);
    CHECK(dp::num_threads() == 1);
    dp::detail::parallel_for(1 << 20, 1, [&](dp::index_t, dp::index_t) { parts++; });
  }
  CHECK(parts.load() == 1);
  CHECK(dp::num_threads() >= 1);
}

TEST_CASE("loops started from several threads at once all complete (the busy pool runs them inline)") {
  std::atomic<long> total{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < 4; ++t) {
    ts.emplace_back([&] {
      for (int r = 0; r < 200; ++r) {
        dp::detail::parallel_for(5000, 100, [&](dp::index_t b, dp::index_t e) { total += e - b; });
      }
    });
  }
  for (auto& t : ts) {
    t.join();
  }
  CHECK(total.load() == 4L * 200 * 5000);
}

TEST_CASE("many back-to-back loops: each part runs once, however late a worker wakes") {
  // The caller returns as soon as every part is done; a worker that wakes after that must take
  // nothing from the finished loop and still take its share of the next one.
  const int threads = dp::detail::thread_pool::instance().size();
  long covered = 0, calls = 0;
  std::atomic<long> total{0}, parts{0};
  for (int r = 0; r < 100000; ++r) {
    const dp::index_t n = 1 + r % (4 * threads);
    dp::detail::parallel_for(n, 1, [&](dp::index_t b, dp::index_t e) {
      total.fetch_add(e - b, std::memory_order_relaxed);
      parts.fetch_add(1, std::memory_order_relaxed);
    });
    covered += n;
    calls += std::min<long>(n, std::min(dp::num_threads(), threads));
  }
  CHECK(total.load() == covered);
  CHECK(parts.load() == calls);
}
