// One thread per replica of dp::parallel (replica 0 runs on the caller's thread), in two modes:
// run(fn) calls fn(i) for every replica at once (jobs that meet in collectives), and each(fn, n)
// hands out fn(0) ... fn(n - 1) to whichever threads are free, the caller included, so a worker
// the OS has not scheduled (a shared machine) delays nothing: its tasks are taken by the caller.
// Both rethrow the first failure. No allocation per call: the job is a pointer to the callable.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <exception>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include <dp/config.hpp>
#include <dp/core/error.hpp>
#include <dp/exec/fp_env.hpp>
#include <dp/exec/job_board.hpp>
#include <dp/exec/spin.hpp>
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
        board_(4 * replicas, spin_) {
    try {
      for (int i = 1; i < replicas; ++i) {
        threads_.emplace_back([this, i] { loop(i); });
      }
    } catch (...) {  // no thread to make (a limit): the ones made must end, or their destructor terminates
      board_.close();
      for (auto& t : threads_) {
        t.join();
      }
      throw;
    }
  }
  replica_threads(const replica_threads&) = delete;
  replica_threads& operator=(const replica_threads&) = delete;
  ~replica_threads() {
    board_.close();
    for (auto& t : threads_) {
      t.join();
    }
  }

  int size() const noexcept { return n_; }
  /// The most tasks one each() call hands out.
  int max_tasks() const noexcept { return board_.max_tasks(); }

  /// Calls fn(i) for i in [0, size()) concurrently; rethrows the lowest replica's exception.
  template <class F>
  void run(F& fn) {
    const dp::detail::host_fp_scope fp;
    set(fn);
    board_.post(0, true);
    {
      thread_budget_scope budget(budget_);
      call(0);
    }
    board_.wait_finished(n_ - 1);
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
    const dp::detail::host_fp_scope fp;
    set(fn);
    failed_task_ = tasks;
    task_error_ = nullptr;
    // One task, or no worker: the caller runs it without waking anyone.
    const std::uint64_t job = board_.post(tasks, n_ > 1 && tasks > 1);
    {
      thread_budget_scope budget(budget_);
      take(job, 0);
    }
    board_.wait_finished(tasks);
    if (task_error_) {
      std::rethrow_exception(std::exchange(task_error_, nullptr));
    }
  }

 private:
  using job_board = dp::detail::job_board;

  template <class F>
  void set(F& fn) {
    fn_ = [](void* ctx, int i) { (*static_cast<F*>(ctx))(i); };
    ctx_ = &fn;
  }

  /// Runs thread t's own tasks of job `w`, then any not yet started.
  void take(std::uint64_t w, int t) {
    const int tasks = job_board::tasks_of(w);
    for (int k = t; k < tasks; k += n_) {
      if (board_.claim(k, w)) {
        run_task(k);
      }
    }
    for (int k = 0; k < tasks; ++k) {
      if (k % n_ != t && board_.claim(k, w)) {
        run_task(k);
      }
    }
  }

  /// Runs claimed task k (in its poster's floating-point environment, which the claim adopted).
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
    board_.finish();
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
    unsigned done = 0;
    for (;;) {
      const std::uint64_t w = board_.next(done, spin);
      if (board_.closed()) {
        return;
      }
      if (job_board::tasks_of(w) > 0) {
        take(w, i);
        continue;
      }
      // A job of every replica at once is never skipped for a later one: its poster waits for all.
      call(i);
      board_.finish();
    }
  }

  int n_, budget_;
  std::chrono::nanoseconds spin_;
  std::vector<std::thread> threads_;
  std::vector<std::exception_ptr> errors_;  // run()'s, per replica
  job_board board_;
  std::mutex error_mutex_;  // each()'s first failure
  int failed_task_ = 0;
  std::exception_ptr task_error_;
  void (*fn_)(void*, int) = nullptr;
  void* ctx_ = nullptr;
};

}  // namespace dp::inline DP_ABI::dist::detail
