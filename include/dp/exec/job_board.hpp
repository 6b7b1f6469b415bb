// Where one poster hands numbered jobs to worker threads: the host thread pool's loops and
// dp::parallel's replica threads both post here, so how a job is published, claimed, woken for and
// waited on is written once, and so is the rule that every task runs in its poster's
// floating-point environment (flush to zero, rounding mode: exec/fp_env.hpp).
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <thread>
#include <vector>

#include <dp/config.hpp>
#include <dp/exec/fp_env.hpp>
#include <dp/exec/spin.hpp>

namespace dp::inline DP_ABI::detail {

/// A job is posted as a word: its number (48 bits: no wrap-around in practice) and its task count
/// (16 bits). Task k runs on the first thread whose compare-exchange moves its claim to the job's
/// number; a thread that wakes after the job finished (every task claimed with that number or a
/// later one) takes nothing. So the poster waits for tasks, never for a thread the OS has not
/// scheduled: the tasks such a thread would have taken are taken by the poster. One poster at a time.
class job_board {
 public:
  /// `poster_spin`: how long the poster spins for its tasks before it sleeps.
  explicit job_board(int max_tasks, std::chrono::nanoseconds poster_spin = spin_budget)
      : claims_(static_cast<std::size_t>(std::clamp(max_tasks, 1, 0xffff))), poster_spin_(poster_spin) {}
  job_board(const job_board&) = delete;
  job_board& operator=(const job_board&) = delete;

  int max_tasks() const noexcept { return static_cast<int>(claims_.size()); }
  static std::uint64_t number_of(std::uint64_t w) noexcept { return w >> 16; }
  static int tasks_of(std::uint64_t w) noexcept { return static_cast<int>(w & 0xffff); }

  // The poster's side.

  /// Publishes a job of `tasks` tasks (0: a job every worker takes part in once, whose poster
  /// waits for every worker's acknowledgement before posting again: workers read its bits in
  /// next()) and wakes the sleeping workers when `wake`; returns its word. The finished count
  /// starts again from zero; the poster's floating-point control bits go with the job.
  std::uint64_t post(int tasks, bool wake) {
    finished_.store(0, std::memory_order_relaxed);
    fp_control_ = read_fp_control();
    const std::uint64_t job = ++number_ << 16 | static_cast<std::uint64_t>(tasks);
    job_.store(job, std::memory_order_release);
    // Always stored (a spinning worker must not see the epoch lag behind the word for long);
    // sequentially consistent, so that it is visible before notify_all reads whether anyone waits
    // (a release store may still sit in the store buffer then: a lost wake-up).
    epoch_.store(static_cast<unsigned>(number_), std::memory_order_seq_cst);
    if (wake) {
      epoch_.notify_all();
    }
    return job;
  }

  /// Waits until `target` tasks (or acknowledgements) are finished, spinning while it pays, then
  /// sleeping on the count just read (reloading it for wait() could see the last one finish and
  /// sleep on that value: a lost wake-up).
  void wait_finished(int target) {
    int seen = 0;
    poster_spin_.wait([&] { return (seen = finished_.load(std::memory_order_acquire)) == target; },
                      [&] { finished_.wait(seen, std::memory_order_acquire); });
  }

  /// Posts a last job that wakes every worker; next() then returns with closed() true.
  void close() {
    closed_.store(true);
    post(0, true);
  }

  // The workers' side (and the poster's, for the tasks it takes).

  /// Waits for a job later than `done` (the number of the last job this thread took part in),
  /// updates `done` and returns the job's word: the latest job, maybe later than the one that woke
  /// this thread (a poster of tasks moves on without waiting for late workers). A job of every
  /// worker runs in its poster's floating-point environment from here (its poster waits for all;
  /// close() posts nothing after).
  std::uint64_t next(unsigned& done, adaptive_spin& spin) {
    for (;;) {
      spin.wait([&] { return epoch_.load(std::memory_order_acquire) != done; },
                [&] { epoch_.wait(done, std::memory_order_acquire); });
      const std::uint64_t w = job_.load(std::memory_order_acquire);
      const auto number = static_cast<unsigned>(number_of(w));
      if (number != done) {
        done = number;
        if (tasks_of(w) == 0) {
          adopt_fp_control(fp_control_);
        }
        return w;
      }
      // post() stores the word before the epoch, so the epoch can still hold the job before this
      // one: taking the word again would run a job of every worker twice (its extra
      // acknowledgement then hung the poster, seen under ThreadSanitizer).
      std::this_thread::yield();
    }
  }

  bool closed() const noexcept { return closed_.load(); }

  /// Takes task k of job `w` and its poster's floating-point environment; false when another
  /// thread has it (or a later job does). The poster's bits are read only for a task claimed of
  /// its job: a late worker reading them unclaimed would race with the next post().
  bool claim(int k, std::uint64_t w) noexcept {
    const std::uint64_t number = number_of(w);
    auto& c = claims_[static_cast<std::size_t>(k)];
    std::uint64_t prev = c.load(std::memory_order_relaxed);
    if (prev < number &&
        c.compare_exchange_strong(prev, number, std::memory_order_acq_rel, std::memory_order_relaxed)) {
      adopt_fp_control(fp_control_);
      return true;
    }
    return false;
  }

  /// Counts one task (or acknowledgement) finished and wakes the poster if it sleeps.
  void finish() noexcept {
    finished_.fetch_add(1, std::memory_order_acq_rel);
    finished_.notify_one();
  }

 private:
  std::vector<std::atomic<std::uint64_t>> claims_;
  adaptive_spin poster_spin_;
  std::uint64_t number_ = 0;  // the poster's count of jobs posted
  unsigned fp_control_ = 0;   // the poster's floating-point control bits for the job posted last
  std::atomic<std::uint64_t> job_{0};
  std::atomic<unsigned> epoch_{0};  // the last job's number (low bits): what workers sleep on
  std::atomic<int> finished_{0};
  std::atomic<bool> closed_{false};
};

}  // namespace dp::inline DP_ABI::detail
