// What dp asks of OpenBLAS at run time, found through dlsym so that another CBLAS library works too:
// one thread per call (dp owns the cores), and whether its kernels suit the CPU it runs on.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <dlfcn.h>
#include <mutex>
#include <string_view>

#include <dp/config.hpp>

namespace dp::inline DP_ABI::detail {

/// Makes OpenBLAS single-threaded once, and stops its server threads: started with the library, they
/// spin (sched_yield) for about 0.1 s before they sleep, holding the core a host worker of
/// dp::parallel needs (measured: the worker lost 40% of its tasks to the caller over a 0.15 s
/// training), and a single-threaded OpenBLAS never uses them. OpenBLAS itself stops them this way
/// before every fork.
inline void blas_single_thread_once() {
  static std::once_flag once;
  std::call_once(once, [] {
    using setter = void (*)(int);
    if (auto f = reinterpret_cast<setter>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"))) {
      f(1);
      using stopper = int (*)();
      if (auto stop = reinterpret_cast<stopper>(dlsym(RTLD_DEFAULT, "blas_thread_shutdown_"))) {
        stop();
      }
    }
  });
}

/// OpenBLAS built for many CPUs (DYNAMIC_ARCH: Debian's) picks its kernels by CPU model number when it
/// loads, and gives a model newer than itself its generic x86-64 kernels (Prescott: SSE3). Measured on
/// an Emerald Rapids Xeon (family 6 model 207, AVX-512) with Debian's 0.3.21, one thread: 64x128x128
/// sgemm 75 us against 16 us with its SkylakeX kernels, 64x10x128 8.2 us against oneDNN's 2.7.
/// True when `core` (openblas_get_corename: "Prescott" from a DYNAMIC_ARCH build, "PRESCOTT" from one
/// built for a single target) names kernels without AVX2 and FMA on a CPU that has both, and the user
/// did not choose them (`forced`: OPENBLAS_CORETYPE set). Names not known to be slow count as fast.
constexpr bool openblas_core_generic(std::string_view core, bool cpu_has_avx2_fma, bool forced) {
  if (!cpu_has_avx2_fma || forced) {
    return false;
  }
  const auto same = [](std::string_view x, std::string_view y) {  // ASCII, ignoring case
    const auto lower = [](char ch) { return ch >= 'A' && ch <= 'Z' ? static_cast<char>(ch - 'A' + 'a') : ch; };
    return x.size() == y.size() &&
           std::equal(x.begin(), x.end(), y.begin(), [&](char a, char b) { return lower(a) == lower(b); });
  };
  // OpenBLAS's x86 kernels built for CPUs without AVX2 and FMA.
  for (const std::string_view slow :
       {"Generic",      "Katmai",    "Coppermine", "Northwood", "Prescott",    "Banias",      "Atom",
        "Core2",        "Penryn",    "Dunnington", "Nehalem",   "Sandybridge", "Athlon",      "Opteron",
        "Opteron_SSE3", "Barcelona", "Bobcat",     "Bulldozer", "Piledriver",  "Steamroller", "Nano"}) {
    if (same(core, slow)) {
      return true;
    }
  }
  return false;
}

/// Whether the OpenBLAS this process loaded runs generic kernels on this CPU (false for another CBLAS).
inline bool openblas_generic_in_use() {
#if defined(__x86_64__)
  using namer = const char* (*)();
  const auto name = reinterpret_cast<namer>(dlsym(RTLD_DEFAULT, "openblas_get_corename"));
  const char* core = name != nullptr ? name() : nullptr;
  const bool avx2_fma = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return openblas_core_generic(core != nullptr ? core : "", avx2_fma, std::getenv("OPENBLAS_CORETYPE") != nullptr);
#else
  return false;
#endif
}

/// The process's answer, found on first use; while true, float products that OpenBLAS would get go
/// to oneDNN when dp has it (exec/blas.hpp). Tests set it both ways.
inline std::atomic<bool>& openblas_generic_switch() {
  static std::atomic<bool> generic{openblas_generic_in_use()};
  return generic;
}

}  // namespace dp::inline DP_ABI::detail
