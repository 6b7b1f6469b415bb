// The host thread pool and dp's thread budget. One pool per process; a loop uses it when its
// calling thread's budget allows and the pool is free, and otherwise runs in the caller (host
// workers of dp::parallel run one thread each, so they never wait on each other for the pool).
#pragma once

#include <algorithm>
#include <atomic>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include <dp/config.hpp>
#include <dp/core/error.hpp>
#include <dp/core/faults.hpp>
#include <dp/core/shape.hpp>
#include <dp/exec/fp_env.hpp>
#include <dp/exec/job_board.hpp>
#include <dp/exec/spin.hpp>

namespace dp::inline DP_ABI {
namespace detail {

/// The most threads the environment may ask for: more is a typo, not a machine (each is a thread
/// the pool starts).
inline constexpr int max_env_threads = 4096;

/// `s` as a thread count from 1 to max_env_threads, all of it a number; 0 when it is not one.
inline int env_thread_count(std::string_view s) {
  int n = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), n);
  return ec == std::errc{} && end == s.data() + s.size() && n >= 1 && n <= max_env_threads ? n : 0;
}

/// The pool's starting size: DP_NUM_THREADS (dp's: anything but a count is an error naming it), else
/// OMP_NUM_THREADS as OpenMP reads it (the first entry of its list; a value OpenMP would ignore is
/// ignored here too), else the hardware threads.
inline int env_threads(const char* dp_value, const char* omp_value) {
  if (dp_value != nullptr && *dp_value != '\0') {
    const int n = env_thread_count(dp_value);
    DP_CHECK(n > 0, value_error,
             "dp: the environment variable DP_NUM_THREADS must be a whole number of threads from 1 to ",
             max_env_threads, ", got '", dp_value, "'");
    return n;
  }
  if (omp_value != nullptr) {
    std::string_view s = omp_value;
    s = s.substr(0, s.find(','));
    const auto first = s.find_first_not_of(" \t"), last = s.find_last_not_of(" \t");
    if (const int n = first == std::string_view::npos ? 0 : env_thread_count(s.substr(first, last - first + 1));
        n > 0) {
      return n;
    }
  }
  return static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
}
inline int env_threads() { return env_threads(std::getenv("DP_NUM_THREADS"), std::getenv("OMP_NUM_THREADS")); }

inline std::atomic<int>& global_threads() {
  static std::atomic<int> n{env_threads()};
  return n;
}

inline int& thread_budget() {
  thread_local int n = 0;  // 0: the global setting
  return n;
}

class thread_pool {
 public:
  static thread_pool& instance() {
    static thread_pool pool(static_cast<int>(std::max<unsigned>(std::thread::hardware_concurrency(), env_threads())) -
                            1);
    return pool;
  }

  /// Threads a loop can use: the workers plus the caller.
  int size() const { return static_cast<int>(workers_.size()) + 1; }

  /// Runs fn(ctx, part) for every part in [0, parts) (parts <= size()); the caller works too, and
  /// takes the parts no worker has started. Returns false (having run nothing) when the pool is busy
  /// with another caller's loop. Parts that throw: once every part has ended, the error of the
  /// lowest-numbered one is rethrown here (the same one whatever the timing).
  bool try_run(int parts, void (*fn)(void*, int), void* ctx) {
    if (busy_.exchange(true, std::memory_order_acquire)) {
      return false;
    }
    fn_ = fn;
    ctx_ = ctx;
    const std::uint64_t job = board_.post(parts, true);
    take(job);
    board_.wait_finished(parts);
    // Every part has ended, thrown or not: the pool is free again, and the error goes on in the
    // caller (a worker's would have ended the process; the caller's left the pool busy).
    const std::exception_ptr failed = std::exchange(failed_, nullptr);
    failed_part_ = INT32_MAX;
    busy_.store(false, std::memory_order_release);
    if (failed) {
      std::rethrow_exception(failed);
    }
    return true;
  }

  ~thread_pool() {
    // A loop still running on another thread at exit (a detached thread's) ends first: closing
    // posts to the board, which would race with that loop's post and its wait for its parts. The
    // flag stays taken, so a loop started later in static destruction runs on its caller alone.
    // One that does not end within a second (exit() called from a part, a part blocked for good)
    // keeps the workers: they are left to the process's end, not joined (which would hang).
    const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(1);
    while (busy_.exchange(true, std::memory_order_acquire)) {
      if (std::chrono::steady_clock::now() > give_up) {
        for (auto& t : workers_) {
          t.detach();
        }
        return;
      }
      std::this_thread::yield();
    }
    board_.close();
    for (auto& t : workers_) {
      t.join();
    }
  }

 private:
  explicit thread_pool(int workers) : board_(workers + 1) {
    workers_.reserve(std::max(0, workers));
    for (int i = 0; i < workers; ++i) {
      try {
        workers_.emplace_back([this] { loop(); });
      } catch (const std::system_error&) {
        break;  // the OS gave fewer threads (a process limit): the caller takes the parts none takes
      }
    }
  }

  void take(std::uint64_t job) {
    for (int p = 0; p < job_board::tasks_of(job); ++p) {
      if (board_.claim(p, job)) {
        try {
          fn_(ctx_, p);
        } catch (...) {
          const std::lock_guard lock(failed_m_);
          if (p < failed_part_) {
            failed_ = std::current_exception();
            failed_part_ = p;
          }
        }
        board_.finish();
      }
    }
  }

  void loop() {
    // Spin briefly: back-to-back loops (a training step) then start without a futex wake-up.
    adaptive_spin spin;
    unsigned done = 0;  // the epoch at construction: a job posted before this thread ran is not missed
    for (;;) {
      const std::uint64_t job = board_.next(done, spin);
      if (board_.closed()) {
        return;
      }
      take(job);
    }
  }

  std::vector<std::thread> workers_;
  job_board board_;
  std::atomic<bool> busy_{false};  // one poster at a time
  void (*fn_)(void*, int) = nullptr;
  void* ctx_ = nullptr;
  std::mutex failed_m_;
  std::exception_ptr failed_;  // the error of the loop's lowest failed part, for try_run to rethrow
  int failed_part_ = INT32_MAX;
};

}  // namespace detail

/// Threads dp uses for a host loop started by this thread (its own budget if set, else the global one).
inline int num_threads() {
  const int own = detail::thread_budget();
  return own > 0 ? own : detail::global_threads().load(std::memory_order_relaxed);
}

/// Sets the global number of host threads (DP_NUM_THREADS or OMP_NUM_THREADS set the start value).
inline void set_num_threads(int n) { detail::global_threads().store(std::max(1, n)); }

/// Sets the calling thread's own budget for the scope (dp::parallel gives each host worker one thread).
class thread_budget_scope {
 public:
  explicit thread_budget_scope(int n) : prev_(detail::thread_budget()) { detail::thread_budget() = std::max(1, n); }
  ~thread_budget_scope() { detail::thread_budget() = prev_; }
  thread_budget_scope(const thread_budget_scope&) = delete;
  thread_budget_scope& operator=(const thread_budget_scope&) = delete;

 private:
  int prev_;
};

namespace detail {

/// Calls body(begin, end) over [0, n) split into contiguous parts of at least `grain` items,
/// in parallel when the budget and the pool allow. Parts are a pure function of (n, grain,
/// threads), never of timing.
template <class Body>
void parallel_for(index_t n, index_t grain, Body&& body) {
  if (n <= 0) {
    return;
  }
  const host_fp_scope fp;
  const int threads = std::min(num_threads(), thread_pool::instance().size());
  const index_t max_parts = grain > 0 ? ceil_div(n, grain) : n;
  const int parts = static_cast<int>(std::min<index_t>(threads, max_parts));
  if (parts <= 1) {
    body(index_t{0}, n);
    return;
  }
  struct ctx_t {
    Body* body;
    index_t n;
    int parts;
    std::atomic<std::int64_t>* faults;  // the caller's: its check after the pass sees the workers' faults
  } ctx{&body, n, parts, fault_word()};
  auto fn = [](void* c, int p) {
    auto* x = static_cast<ctx_t*>(c);
    const fault_word_scope faults(x->faults);
    const index_t b = x->n * p / x->parts, e = x->n * (p + 1) / x->parts;
    (*x->body)(b, e);
  };
  if (!thread_pool::instance().try_run(parts, fn, &ctx)) {
    body(index_t{0}, n);
  }
}

}  // namespace detail
}  // namespace dp::inline DP_ABI
