// One thread per replica of dp::parallel (replica 0 runs on the caller's thread), in two modes:
// run(fn) calls fn(i) for every replica at once (jobs that meet in collectives), and each(fn, n)
// hands out fn(0) ... fn(n - 1) to whichever threads are free, the caller included, so a worker
// the OS has not scheduled (a shared machine) delays nothing: its tasks are taken by the caller.
// Both rethrow the first failure. No allocation per call: the job is a pointer to the callable.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <exception>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include <dp/config.hpp>
#include <dp/core/error.hpp>
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
        errors_(static_cast<std::size_t>(replicas)),
        claims_(4 * replicas) {
    for (int i = 1; i < replicas; ++i) {
      threads_.emplace_back([this, i] { loop(i); });
    }
  }
  replica_threads(const replica_threads&) = delete;
  replica_threads& operator=(const replica_threads&) = delete;
  ~replica_threads() {
    stop_.store(true);
    post(0, true);
    for (auto& t : threads_) {
      t.join();
    }
  }

  int size() const noexcept { return n_; }
  /// The most tasks one each() call hands out.
  int max_tasks() const noexcept { return claims_.max_tasks(); }

  /// Calls fn(i) for i in [0, size()) concurrently; rethrows the lowest replica's exception.
  template <class F>
  void run(F& fn) {
    set(fn);
    acks_.store(0, std::memory_order_relaxed);
    post(0, true);
    {
      thread_budget_scope budget(budget_);
      call(0);
    }
    wait_for(acks_, n_ - 1);
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

  /// Calls fn(k) once for each k in [0, tasks), on the caller and whichever workers are free, each
  /// task on one thread with the replica's thread budget (so a task's results do not depend on
  /// which thread ran it); rethrows the lowest task's exception. Thread t takes tasks t, t + size(),
  /// ... first (replica t's data stay in its core's cache), then any task nobody has started. For
  /// tasks that never wait for each other.
  template <class F>
  void each(F& fn, int tasks) {
    DP_CHECK(tasks >= 0 && tasks <= max_tasks(), value_error, "dp: replica_threads::each takes at most ", max_tasks(),
             " tasks, got ", tasks);
    if (tasks == 0) {
      return;
    }
    set(fn);
    failed_task_ = tasks;
    task_error_ = nullptr;
    acks_.store(0, std::memory_order_relaxed);
    // One task, or no worker: the caller runs it without waking anyone.
    const std::uint64_t job = post(tasks, n_ > 1 && tasks > 1);
    {
      thread_budget_scope budget(budget_);
      take(job, 0);
    }
    wait_for(acks_, tasks);
    if (task_error_) {
      std::rethrow_exception(std::exchange(task_error_, nullptr));
    }
  }

 private:
  using claims = dp::detail::task_claims;

  template <class F>
  void set(F& fn) {
    fn_ = [](void* ctx, int i) { (*static_cast<F*>(ctx))(i); };
    ctx_ = &fn;
  }

  /// Publishes a new job (and wakes the workers for it); returns its word.
  std::uint64_t post(int tasks, bool wake) {
    const std::uint64_t job = claims::pack(++number_, tasks);
    job_.store(job, std::memory_order_release);
    // Always stored (a spinning worker must not see the epoch lag behind the word for long);
    // sleeping workers are woken only when there is work for them.
    // Sequentially consistent: the store must be visible before notify_all reads whether anyone
    // waits (a release store may still sit in the store buffer then: a lost wake-up).
    epoch_.store(static_cast<unsigned>(number_), std::memory_order_seq_cst);
    if (wake) {
      epoch_.notify_all();
    }
    return job;
  }

  /// Runs thread t's own tasks of job `w`, then any not yet started.
  void take(std::uint64_t w, int t) {
    const std::uint64_t number = claims::number_of(w);
    const int tasks = claims::tasks_of(w);
    for (int k = t; k < tasks; k += n_) {
      if (claims_.claim(k, number)) {
        run_task(k);
      }
    }
    for (int k = 0; k < tasks; ++k) {
      if (k % n_ != t && claims_.claim(k, number)) {
        run_task(k);
      }
    }
  }

  void run_task(int k) {
    try {
      fn_(ctx_, k);
    } catch (...) {
      std::lock_guard lock(error_mutex_);
      if (k < failed_task_) {
        failed_task_ = k;
        task_error_ = std::current_exception();
      }
    }
    acks_.fetch_add(1, std::memory_order_acq_rel);
    acks_.notify_one();
  }

  /// Waits until `count` holds `target`, spinning while it pays, then sleeping on the value just
  /// read (reloading it for wait() could see the last ack and sleep on that value: a lost wake-up).
  void wait_for(std::atomic<int>& count, int target) {
    int seen = 0;
    main_spin_.wait([&] { return (seen = count.load(std::memory_order_acquire)) == target; },
                    [&] { count.wait(seen, std::memory_order_acquire); });
  }

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
    unsigned done = 0;  // the number of the last job this thread took part in
    for (;;) {
      spin.wait([&] { return epoch_.load(std::memory_order_acquire) != done; },
                [&] { epoch_.wait(done, std::memory_order_acquire); });
      if (stop_.load()) {
        return;
      }
      // The word may hold a later job than the epoch read (each() moves on without waiting for
      // late workers); a job of every replica at once is never skipped: its caller waits for all.
      const std::uint64_t w = job_.load(std::memory_order_acquire);
      const auto number = static_cast<unsigned>(claims::number_of(w));
      if (number == done) {
        // post() stores the word before the epoch, so the epoch can still hold the job before
        // this one: without this check a run() job was called twice, and its extra
        // acknowledgements hung the caller (seen under ThreadSanitizer).
        std::this_thread::yield();
        continue;
      }
      done = number;
      if (claims::tasks_of(w) > 0) {
        take(w, i);
        continue;
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
  std::vector<std::exception_ptr> errors_;  // run()'s, per replica
  claims claims_;                           // each()'s
  std::mutex error_mutex_;                  // each()'s first failure
  int failed_task_ = 0;
  std::exception_ptr task_error_;
  std::uint64_t number_ = 0;  // the caller's count of jobs posted
  std::atomic<std::uint64_t> job_{0};
  std::atomic<unsigned> epoch_{0};  // the last job's number (low bits): what workers sleep on
  std::atomic<int> acks_{0};        // run(): workers done; each(): tasks done
  std::atomic<bool> stop_{false};
  void (*fn_)(void*, int) = nullptr;
  void* ctx_ = nullptr;
};

}  // namespace dp::inline DP_ABI::dist::detail
