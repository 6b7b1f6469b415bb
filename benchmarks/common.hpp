// Shared helpers for dp's benchmarks.
#pragma once

#include <dlfcn.h>

#include <benchmark/benchmark.h>

#include <dp/dp.hpp>

namespace dp_bench {

/// Sets OpenBLAS's own thread count (for the peer that calls cblas directly); found at run time.
inline void openblas_threads(int n) {
  using setter = void (*)(int);
  if (auto f = reinterpret_cast<setter>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"))) {
    f(n);
  }
}

/// Three warm-up steps (the plan is traced on the first), then timed training steps of `learner`
/// (an nn::trainer or a dp::parallel) with cross-entropy on (x, y); reports steps/s.
template <class Learner, class Optimizer, class X, class Y>
void timed_steps(benchmark::State& s, Learner& learner, Optimizer& opt, const X& x, const Y& y) {
  for (int i = 0; i < 3; ++i) {
    (void)learner.backward(dp::nn::cross_entropy, x, y);
    opt.step();
  }
  for (auto _ : s) {
    benchmark::DoNotOptimize(learner.backward(dp::nn::cross_entropy, x, y));
    opt.step();
  }
  s.counters["steps/s"] = benchmark::Counter(static_cast<double>(s.iterations()), benchmark::Counter::kIsRate);
}

}  // namespace dp_bench
