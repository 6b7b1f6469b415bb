// replica_threads: the host workers dp::parallel runs its replicas on.
#include <atomic>
#include <cfenv>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <future>
#include <stdexcept>
#include <thread>
#include <vector>

#include <doctest/doctest.h>

#include <dp/dp.hpp>

namespace {
using dp::dist::detail::replica_threads;

/// Runs `body` on another thread and fails (ending the process: a hung worker cannot be joined)
/// when it has not finished within `limit`.
template <class F>
void within(std::chrono::seconds limit, const char* what, F body) {
  auto done = std::async(std::launch::async, body);
  if (done.wait_for(limit) != std::future_status::ready) {
    std::fprintf(stderr, "%s: not finished after %lld s (a lost wake-up hangs it)\n", what,
                 static_cast<long long>(limit.count()));
    std::_Exit(1);
  }
  done.get();
}
}  // namespace

TEST_CASE("run calls every replica once per job, all at the same time") {
  replica_threads w(3, 1);
  CHECK(w.size() == 3);
  std::vector<int> calls(3, 0);
  std::atomic<int> inside{0};
  std::atomic<bool> all_inside{false};
  auto job = [&](int i) {
    ++calls[static_cast<std::size_t>(i)];
    ++inside;
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (inside.load() < 3 && std::chrono::steady_clock::now() < until) {
      std::this_thread::yield();
    }
    if (inside.load() == 3) {
      all_inside = true;
    }
  };
  w.run(job);
  CHECK(calls == std::vector<int>{1, 1, 1});
  CHECK(all_inside.load());
}

TEST_CASE("run rethrows the lowest replica's exception after every replica has finished") {
  replica_threads w(3, 1);
  std::atomic<int> finished{0};
  auto job = [&](int i) {
    ++finished;
    if (i >= 1) {
      throw std::runtime_error("replica " + std::to_string(i));
    }
  };
  CHECK_THROWS_WITH(w.run(job), "replica 1");
  CHECK(finished.load() == 3);
  auto fine = [&](int) { ++finished; };
  CHECK_NOTHROW(w.run(fine));  // the errors were cleared
  CHECK(finished.load() == 6);
}

TEST_CASE("many short jobs with more replicas than cores finish (no lost wake-up)") {
  // Oversubscribed, the caller sleeps on the acknowledgement count instead of spinning: this is
  // where waiting on a reloaded count missed the last acknowledgement and slept for ever.
  const int replicas = static_cast<int>(std::max(1u, std::thread::hardware_concurrency())) + 1;
  constexpr long jobs = 100000;
  within(std::chrono::seconds(60), "many short jobs", [&] {
    replica_threads w(replicas, 1);
    std::atomic<long> total{0};
    auto job = [&](int i) {
      // Replica 0 (the caller) finishes first, so it is waiting when the others' acks land.
      for (int k = 0; k < 50 * i; ++k) {
        DP_CPU_RELAX();
      }
      total.fetch_add(i + 1, std::memory_order_relaxed);
    };
    for (long k = 0; k < jobs; ++k) {
      w.run(job);
    }
    CHECK(total.load() == jobs * replicas * (replicas + 1) / 2);
  });
}

TEST_CASE("each runs every task exactly once, more tasks than threads included") {
  replica_threads w(3, 1);
  CHECK(w.max_tasks() == 12);
  for (int tasks : {1, 2, 3, 7, 12}) {
    std::vector<std::atomic<int>> runs(static_cast<std::size_t>(tasks));
    auto task = [&](int k) { runs[static_cast<std::size_t>(k)].fetch_add(1); };
    w.each(task, tasks);
    for (int k = 0; k < tasks; ++k) {
      CHECK(runs[static_cast<std::size_t>(k)].load() == 1);
    }
  }
  auto nothing = [](int) {};
  CHECK_THROWS_WITH_AS(w.each(nothing, 13), doctest::Contains("at most 12 tasks, got 13"), dp::value_error);
}

TEST_CASE("each rethrows the lowest failing task's exception after every task has run") {
  replica_threads w(2, 1);
  std::atomic<int> ran{0};
  auto task = [&](int k) {
    ++ran;
    if (k == 3 || k == 5) {
      throw std::runtime_error("task " + std::to_string(k));
    }
  };
  CHECK_THROWS_WITH(w.each(task, 8), "task 3");
  CHECK(ran.load() == 8);
  auto fine = [&](int) { ++ran; };
  CHECK_NOTHROW(w.each(fine, 8));  // the error was cleared
  CHECK(ran.load() == 16);
}

TEST_CASE("many short jobs of both kinds, interleaved, run each task once (a late worker takes nothing stale)") {
  // Workers that wake after the caller has moved on must neither run a task of a finished job nor
  // miss a job where every replica takes part; more replicas than cores make them late often.
  const int replicas = static_cast<int>(std::max(1u, std::thread::hardware_concurrency())) + 1;
  constexpr long jobs = 20000;
  within(std::chrono::seconds(120), "interleaved jobs", [&] {
    replica_threads w(replicas, 1);
    std::atomic<long> each_total{0}, run_total{0};
    auto task = [&](int k) { each_total.fetch_add(k + 1, std::memory_order_relaxed); };
    auto job = [&](int i) { run_total.fetch_add(i + 1, std::memory_order_relaxed); };
    const int tasks = 2 * replicas;
    for (long j = 0; j < jobs; ++j) {
      w.each(task, 1 + static_cast<int>(j % tasks));
      if (j % 3 == 0) {
        w.run(job);
      }
    }
    long want_each = 0;
    for (long j = 0; j < jobs; ++j) {
      const long t = 1 + j % tasks;
      want_each += t * (t + 1) / 2;
    }
    CHECK(each_total.load() == want_each);
    CHECK(run_total.load() == ((jobs + 2) / 3) * replicas * (replicas + 1) / 2);
  });
}

#if DP_HAS_MXCSR
TEST_CASE("every task and every replica's job runs in the caller's floating-point environment, subnormals flushed") {
  struct restore {
    bool was = dp::flush_denormals();
    ~restore() {
      dp::set_flush_denormals(was);
      std::fesetround(FE_TONEAREST);
    }
  } guard;
  replica_threads w(2, 1);
  const auto caller = std::this_thread::get_id();
  int off_caller = 0;
  for (int round = 0; round < 12; ++round) {
    const bool flush = round % 2 == 0;
    dp::set_flush_denormals(flush);
    REQUIRE(std::fesetround(round % 4 < 2 ? FE_UPWARD : FE_TONEAREST) == 0);
    const unsigned own = dp::detail::read_fp_control();
    const unsigned expected = own | (flush ? dp::detail::flush_bits : 0u);
    // Tasks first (a job of every replica would have set the worker's bits already): task 0 waits
    // (1 s at most) for another thread to start a task, so the worker takes one.
    std::vector<unsigned> tasks(4);
    std::vector<std::thread::id> by(4);
    std::atomic<int> started{0};
    auto task = [&](int k) {
      ++started;
      const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(1);
      while (k == 0 && started.load() < 2 && std::chrono::steady_clock::now() < until) {
        std::this_thread::yield();
      }
      tasks[static_cast<std::size_t>(k)] = dp::detail::read_fp_control();
      by[static_cast<std::size_t>(k)] = std::this_thread::get_id();
    };
    w.each(task, 4);
    CHECK(tasks == std::vector<unsigned>(4, expected));
    for (const auto& id : by) {
      off_caller += id != caller;
    }
    // Then a job of every replica, in another environment than the worker's tasks ran in.
    dp::set_flush_denormals(!flush);
    REQUIRE(std::fesetround(round % 4 < 2 ? FE_TONEAREST : FE_UPWARD) == 0);
    const unsigned own_job = dp::detail::read_fp_control();
    const unsigned expected_job = own_job | (flush ? 0u : dp::detail::flush_bits);
    REQUIRE(expected_job != expected);
    std::vector<unsigned> seen(2);
    auto job = [&](int i) { seen[static_cast<std::size_t>(i)] = dp::detail::read_fp_control(); };
    w.run(job);  // replica 1 on its own thread
    CHECK(seen == std::vector<unsigned>{expected_job, expected_job});
    CHECK(dp::detail::read_fp_control() == own_job);  // the caller's environment is back
  }
  CHECK(off_caller > 0);  // a worker's tasks were among those checked
}
#endif
