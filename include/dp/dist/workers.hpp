// One thread per replica of dp::parallel (replica 0 runs on the caller's thread). run(fn) calls
// fn(i) for every replica at once and returns when all are done, rethrowing the first failure. No
// allocation per call: the job is a pointer to the caller's callable.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <exception>
#include <thread>
#include <vector>

#include <dp/config.hpp>
#include <dp/exec/thread_pool.hpp>

namespace dp::inline DP_ABI::dist::detail {

class replica_threads {
 public:
  /// `budget` is each replica's host thread budget (dp::parallel gives host workers cores / replicas).
  replica_threads(int replicas, int budget)
      : n_(replicas),
        budget_(budget),
        // Spinning pays only when every replica has a core; oversubscribed, it starves the one awaited.
        spin_(replicas <= static_cast<int>(std::max(1u, std::thread::hardware_concurrency()))
                  ? dp::detail::spin_budget
                  : std::chrono::nanoseconds(0)),
        errors_(static_cast<std::size_t>(replicas)) {
    for (int i = 1; i < replicas; ++i) {
      threads_.emplace_back([this, i] { loop(i); });
    }
  }
  replica_threads(const replica_threads&) = delete;
  replica_threads& operator=(const replica_threads&) = delete;
  ~replica_threads() {
    stop_.store(true);
    epoch_.fetch_add(1);
    epoch_.notify_all();
    for (auto& t : threads_) {
      t.join();
    }
  }

  int size() const noexcept { return n_; }

  /// Calls fn(i) for i in [0, size()) concurrently; rethrows the lowest replica's exception.
  template <class F>
  void run(F& fn) {
    fn_ = [](void* ctx, int i) { (*static_cast<F*>(ctx))(i); };
    ctx_ = &fn;
    acks_.store(0, std::memory_order_relaxed);
    epoch_.fetch_add(1, std::memory_order_release);
    epoch_.notify_all();
    {
      thread_budget_scope budget(budget_);
      call(0);
    }
    // Sleep on the count just checked: reloading it for wait() could see the last ack and then
    // sleep on that value, which no worker changes again (a lost wake-up).
    int acks = 0;
    main_spin_.wait([&] { return (acks = acks_.load(std::memory_order_acquire)) == n_ - 1; },
                    [&] { acks_.wait(acks, std::memory_order_acquire); });
    for (auto& e : errors_) {
      if (e) {
        std::exception_ptr first = e;
        for (auto& x : errors_) {
          x = nullptr;
        }
        std::rethrow_exception(first);
      }
    }
  }

 private:
  void call(int i) {
    try {
      fn_(ctx_, i);
    } catch (...) {
      errors_[static_cast<std::size_t>(i)] = std::current_exception();
    }
  }
  void loop(int i) {
    thread_budget_scope budget(budget_);
    dp::detail::adaptive_spin spin(spin_);
    unsigned seen = 0;
    for (;;) {
      unsigned now = seen;
      spin.wait([&] { return (now = epoch_.load(std::memory_order_acquire)) != seen; },
                [&] { epoch_.wait(seen, std::memory_order_acquire); });
      seen = now;
      if (stop_.load()) {
        return;
      }
      call(i);
      acks_.fetch_add(1, std::memory_order_release);
      acks_.notify_one();
    }
  }

  int n_, budget_;
  std::chrono::nanoseconds spin_;
  dp::detail::adaptive_spin main_spin_{spin_};
  std::vector<std::thread> threads_;
  std::vector<std::exception_ptr> errors_;
  std::atomic<unsigned> epoch_{0};
  std::atomic<int> acks_{0};
  std::atomic<bool> stop_{false};
  void (*fn_)(void*, int) = nullptr;
  void* ctx_ = nullptr;
};

}  // namespace dp::inline DP_ABI::dist::detail
