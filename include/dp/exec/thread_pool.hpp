// The host thread pool and dp's thread budget. One pool per process; a loop uses it when its
// calling thread's budget allows and the pool is free, and otherwise runs in the caller (host
// workers of dp::parallel run one thread each, so they never wait on each other for the pool).
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include <dp/config.hpp>

#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__)
#include <immintrin.h>
#define DP_CPU_RELAX() _mm_pause()
#else
#define DP_CPU_RELAX() ((void)0)
#endif

namespace dp::inline DP_ABI {
namespace detail {

/// How long a waiter spins before it sleeps: long enough to catch a partner a few microseconds
/// behind without a futex round trip, short enough not to hold a core the awaited thread may need
/// (when the machine is shared). Time, not a count of pauses: a pause costs from a few to 140
/// cycles depending on the CPU (about 20 ns on the Intel Xeon of the CI machines).
inline constexpr std::chrono::nanoseconds spin_budget = std::chrono::microseconds(50);

/// Spins (pausing) until ready() holds or `budget` has passed; returns ready().
template <class Ready>
bool spin_until(Ready&& ready, std::chrono::nanoseconds budget = spin_budget) {
  if (budget.count() <= 0) {
    return ready();
  }
  const auto end = std::chrono::steady_clock::now() + budget;
  for (;;) {
    for (int i = 0; i < 64; ++i) {
      if (ready()) {
        return true;
      }
      DP_CPU_RELAX();
    }
    if (std::chrono::steady_clock::now() >= end) {
      return ready();
    }
  }
}

/// A waiter's spin budget, set by its last wait: a wait that ended within the budget (the partner
/// was running and close) spins next time; a longer one (the partner was behind, or not running
/// because the machine is shared) sleeps at once next time, leaving the core to the thread awaited.
class adaptive_spin {
 public:
  explicit adaptive_spin(std::chrono::nanoseconds max = spin_budget) : max_(max), budget_(max) {}

  /// Spins while it pays, then calls block() until ready().
  template <class Ready, class Block>
  void wait(Ready&& ready, Block&& block) {
    if (max_.count() <= 0) {
      while (!ready()) {
        block();
      }
      return;
    }
    const auto start = std::chrono::steady_clock::now();
    if (spin_until(ready, budget_)) {
      budget_ = max_;
      return;
    }
    while (!ready()) {
      block();
    }
    budget_ = std::chrono::steady_clock::now() - start <= max_ ? max_ : std::chrono::nanoseconds(0);
  }

 private:
  std::chrono::nanoseconds max_, budget_;
};

inline int env_threads() {
  for (const char* name : {"DP_NUM_THREADS", "OMP_NUM_THREADS"}) {
    if (const char* v = std::getenv(name); v && *v) {
      const int n = std::atoi(v);
      if (n > 0) {
        return n;
      }
    }
  }
  return static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
}

inline std::atomic<int>& global_threads() {
  static std::atomic<int> n{env_threads()};
  return n;
}

inline int& thread_budget() {
  thread_local int n = 0;  // 0: the global setting
  return n;
}

/// The claims on one job's tasks, shared by the host thread pool and dp::parallel's replica
/// threads. A job is posted as a word: its number (48 bits: no wrap-around in practice) and its task
/// count (16 bits). Task k runs on the first thread whose compare-exchange moves its claim to the
/// job's number; a thread that wakes after the job finished (every task claimed with that number
/// or a later one) takes nothing. So the poster waits for the tasks, never for a thread the OS
/// has not scheduled yet: the tasks such a thread would have taken are taken by the poster.
class task_claims {
 public:
  explicit task_claims(int max_tasks) : claims_(static_cast<std::size_t>(std::clamp(max_tasks, 1, 0xffff))) {}

  int max_tasks() const noexcept { return static_cast<int>(claims_.size()); }

  static std::uint64_t pack(std::uint64_t number, int tasks) {
    return number << 16 | static_cast<std::uint64_t>(tasks);
  }
  static std::uint64_t number_of(std::uint64_t w) { return w >> 16; }
  static int tasks_of(std::uint64_t w) { return static_cast<int>(w & 0xffff); }

  /// Takes task k of job `number`; false when another thread has it (or a later job does).
  bool claim(int k, std::uint64_t number) noexcept {
    auto& c = claims_[static_cast<std::size_t>(k)];
    std::uint64_t prev = c.load(std::memory_order_relaxed);
    return prev < number &&
           c.compare_exchange_strong(prev, number, std::memory_order_acq_rel, std::memory_order_relaxed);
  }

 private:
  std::vector<std::atomic<std::uint64_t>> claims_;
};

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
  /// with another caller's loop.
  bool try_run(int parts, void (*fn)(void*, int), void* ctx) {
    if (busy_.exchange(true, std::memory_order_acquire)) {
      return false;
    }
    fn_ = fn;
    ctx_ = ctx;
    done_.store(0, std::memory_order_relaxed);
    const std::uint64_t job = task_claims::pack(++number_, parts);
    job_.store(job, std::memory_order_release);
    epoch_.store(static_cast<unsigned>(number_),
                 std::memory_order_seq_cst);  // visible before notify_all looks for waiters
    epoch_.notify_all();
    take(job);
    int done = 0;
    // Sleep on the count just read: a part finished after it wakes this thread.
    done_spin_.wait([&] { return (done = done_.load(std::memory_order_acquire)) == parts; },
                    [&] { done_.wait(done, std::memory_order_acquire); });
    busy_.store(false, std::memory_order_release);
    return true;
  }

  ~thread_pool() {
    stop_.store(true);
    epoch_.fetch_add(1);
    epoch_.notify_all();
    for (auto& t : workers_) {
      t.join();
    }
  }

 private:
  explicit thread_pool(int workers) : claims_(workers + 1) {
    workers_.reserve(std::max(0, workers));
    for (int i = 0; i < workers; ++i) {
      workers_.emplace_back([this] { loop(); });
    }
  }

  void take(std::uint64_t job) {
    const std::uint64_t number = task_claims::number_of(job);
    for (int p = 0; p < task_claims::tasks_of(job); ++p) {
      if (claims_.claim(p, number)) {
        fn_(ctx_, p);
        done_.fetch_add(1, std::memory_order_acq_rel);
        done_.notify_one();
      }
    }
  }

  void loop() {
    adaptive_spin spin;
    unsigned seen = 0;  // the epoch at construction: a job posted before this thread ran is not missed
    for (;;) {
      // Spin briefly: back-to-back loops (a training step) then start without a futex wake-up.
      spin.wait([&] { return epoch_.load(std::memory_order_acquire) != seen; },
                [&] { epoch_.wait(seen, std::memory_order_acquire); });
      if (stop_.load()) {
        return;
      }
      const std::uint64_t job =
          job_.load(std::memory_order_acquire);  // the latest job, maybe later than the epoch read
      seen = static_cast<unsigned>(task_claims::number_of(job));
      take(job);
    }
  }

  std::vector<std::thread> workers_;
  task_claims claims_;
  adaptive_spin done_spin_;  // the caller's, one at a time (busy_)
  std::atomic<bool> busy_{false}, stop_{false};
  std::uint64_t number_ = 0;  // the callers' count of jobs posted (one at a time: busy_)
  std::atomic<std::uint64_t> job_{0};
  std::atomic<unsigned> epoch_{0};  // the last job's number (low bits): what workers sleep on
  std::atomic<int> done_{0};        // parts of the current job finished
  void (*fn_)(void*, int) = nullptr;
  void* ctx_ = nullptr;
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
  const int threads = std::min(num_threads(), thread_pool::instance().size());
  const index_t max_parts = grain > 0 ? (n + grain - 1) / grain : n;
  const int parts = static_cast<int>(std::min<index_t>(threads, max_parts));
  if (parts <= 1) {
    body(index_t{0}, n);
    return;
  }
  struct ctx_t {
    Body* body;
    index_t n;
    int parts;
  } ctx{&body, n, parts};
  auto fn = [](void* c, int p) {
    auto* x = static_cast<ctx_t*>(c);
    const index_t b = x->n * p / x->parts, e = x->n * (p + 1) / x->parts;
    (*x->body)(b, e);
  };
  if (!thread_pool::instance().try_run(parts, fn, &ctx)) {
    body(index_t{0}, n);
  }
}

}  // namespace detail
}  // namespace dp::inline DP_ABI
