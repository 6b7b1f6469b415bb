// Shared helpers for dp's benchmarks.
#pragma once

#include <dlfcn.h>

#include <benchmark/benchmark.h>

namespace dp_bench {

/// Sets OpenBLAS's own thread count (for the peer that calls cblas directly); found at run time.
inline void openblas_threads(int n) {
  using setter = void (*)(int);
  if (auto f = reinterpret_cast<setter>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"))) {
    f(n);
  }
}

}  // namespace dp_bench
