// How dp's threads wait for each other: spin briefly (a partner a few microseconds behind costs
// no futex round trip), then sleep (a partner the OS has not scheduled gets the core).
#pragma once

#include <chrono>

#include <dp/config.hpp>

#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__)
#include <immintrin.h>
#define DP_CPU_RELAX() _mm_pause()
#else
#define DP_CPU_RELAX() ((void)0)
#endif

namespace dp::inline DP_ABI::detail {

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

}  // namespace dp::inline DP_ABI::detail
