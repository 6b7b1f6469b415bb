// replica_threads: the host workers dp::parallel runs its replicas on.
#include <atomic>
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
