#include <algorithm>
#include <atomic>
#include <string>
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

TEST_CASE("a part that throws: the error reaches the caller after every part ended, and the pool is free again") {
  const int threads = std::min(dp::num_threads(), dp::detail::thread_pool::instance().size());
  if (threads < 2) {
    return;  // one part: the body runs on the caller alone
  }
  // Part 0 runs on the caller unless a worker is first; the other parts on workers or the caller.
  for (int thrower = 0; thrower < 2; ++thrower) {
    CAPTURE(thrower);
    std::atomic<int> ran{0};
    CHECK_THROWS_WITH_AS(dp::detail::parallel_for(2, 1,
                                                  [&](dp::index_t b, dp::index_t) {
                                                    ran++;
                                                    if (b == thrower) {
                                                      throw dp::value_error("dp: part failed");
                                                    }
                                                  }),
                         "dp: part failed", dp::value_error);
    CHECK(ran.load() == 2);  // the other part ran to its end before the caller went on
  }
  // Both parts throw: the lowest part's error, whichever thread ran it and whenever.
  for (int run = 0; run < 20; ++run) {
    CHECK_THROWS_WITH_AS(
        dp::detail::parallel_for(
            2, 1, [&](dp::index_t b, dp::index_t) { throw dp::value_error(b == 0 ? "dp: part 0" : "dp: part 1"); }),
        "dp: part 0", dp::value_error);
  }
  // A worker's error ended the process, and the caller's left the pool busy: later loops ran inline.
  std::atomic<int> parts{0};
  CHECK(dp::detail::thread_pool::instance().try_run(
      2, [](void* c, int) { ++*static_cast<std::atomic<int>*>(c); }, &parts));
  CHECK(parts.load() == 2);
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

TEST_CASE(
    "DP_NUM_THREADS is a whole number of threads from 1 to 4096, or an error naming it; OMP_NUM_THREADS is read as "
    "OpenMP does") {
  using dp::detail::env_threads;
  const int hardware = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  CHECK(env_threads(nullptr, nullptr) == hardware);
  CHECK(env_threads("", nullptr) == hardware);
  CHECK(env_threads("3", nullptr) == 3);
  CHECK(env_threads("4096", nullptr) == 4096);
  CHECK(env_threads("2", "7") == 2);  // dp's own variable first
  for (const char* bad : {"4abc", "abc", "0", "-1", " 3", "3 ", "1.5", "4097", "99999999999"}) {
    CHECK_THROWS_WITH_AS(env_threads(bad, "2"),
                         doctest::Contains("DP_NUM_THREADS must be a whole number of threads from 1 to 4096"),
                         dp::value_error);
    CHECK_THROWS_WITH_AS(env_threads(bad, nullptr), doctest::Contains((std::string("got '") + bad + "'").c_str()),
                         dp::value_error);
  }
  // OpenMP's list gives the outer level first; what OpenMP would not take as a count is not dp's to
  // reject, and leaves the hardware's.
  CHECK(env_threads(nullptr, "5") == 5);
  CHECK(env_threads(nullptr, "6,2") == 6);
  CHECK(env_threads(nullptr, " 3 ") == 3);
  for (const char* ignored : {"abc", "0", "-2", "9999999999", ",4", ""}) {
    CHECK(env_threads(nullptr, ignored) == hardware);
  }
}
