// Float GEMMs of small and medium shapes through oneDNN (libdnnl), when dp is built with it
// (DP_HAS_ONEDNN=1: CMake sets it when oneDNN is found; DP_WITH_ONEDNN=OFF leaves it out).
//
// Why oneDNN and where (benchmarks/RESULTS.md, "GEMM by shape", one thread): on the shapes of small
// MLPs its sgemm takes 65-80% of OpenBLAS's time, the transposed-B products of every linear layer's
// forward included, which LIBXSMM's JIT kernels cannot take without a copy; on large shapes it is
// as fast or faster. The small products LIBXSMM takes (exec/libxsmm.hpp) are asked of it first. A call costs it about
// 0.2 us more than OpenBLAS, which loses on products with a side under 16 or under 2^17 multiply-adds: those stay with
// OpenBLAS, unless it runs generic kernels (exec/openblas.hpp). Double stays with OpenBLAS (oneDNN has no dgemm).
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include <dp/config.hpp>
#include <dp/core/error.hpp>

#if DP_HAS_ONEDNN
#include <dlfcn.h>
#include <oneapi/dnnl/dnnl.h>
#endif

namespace dp::inline DP_ABI::detail {

/// Whether oneDNN computes an m x n x k float product, when dp has it (the rule measured above).
constexpr bool onednn_takes(index_t m, index_t n, index_t k) {
  return std::min({m, n, k}) >= 16 && m * n * k >= (index_t{1} << 17);
}

/// DP_ONEDNN's value at start: unset or empty is on; "1" on, "0" off (its GEMMs through OpenBLAS).
inline bool onednn_env(const char* v) {
  const std::string_view s = v == nullptr ? "" : v;
  DP_CHECK(s.empty() || s == "0" || s == "1", value_error,
           "dp: the environment variable DP_ONEDNN must be 0 (no GEMM through oneDNN) or 1 (oneDNN for the "
           "float shapes it is faster on, the default), got '",
           s, "'");
  return s != "0";
}
/// The process's switch (dp::use_onednn), read from DP_ONEDNN on first use.
inline std::atomic<bool>& onednn_switch() {
  static std::atomic<bool> on{onednn_env(std::getenv("DP_ONEDNN"))};
  return on;
}

#if DP_HAS_ONEDNN
inline constexpr bool has_onednn = true;

/// oneDNN threads with OpenMP; dp splits GEMMs over its own pool, so each call runs on its caller:
/// the caller's OpenMP thread count is 1 for the call and restored after (a program's own OpenMP
/// regions keep theirs). Found at run time: a oneDNN built on another threading runtime has none.
class onednn_one_thread {
 public:
  onednn_one_thread() {
    const auto& f = fns();
    if (f.get && f.set) {
      saved_ = f.get();
      if (saved_ != 1) {
        f.set(1);
      }
    }
  }
  ~onednn_one_thread() {
    if (saved_ > 1) {
      fns().set(saved_);
    }
  }
  onednn_one_thread(const onednn_one_thread&) = delete;
  onednn_one_thread& operator=(const onednn_one_thread&) = delete;

 private:
  struct omp_fns {
    int (*get)() = nullptr;
    void (*set)(int) = nullptr;
  };
  static const omp_fns& fns() {
    static const omp_fns f{reinterpret_cast<int (*)()>(dlsym(RTLD_DEFAULT, "omp_get_max_threads")),
                           reinterpret_cast<void (*)(int)>(dlsym(RTLD_DEFAULT, "omp_set_num_threads"))};
    return f;
  }
  int saved_ = 1;
};

/// C = alpha op(A) op(B) + beta C, all row-major, through oneDNN; false when oneDNN refused (the
/// caller then uses BLAS: the result is the same product).
inline bool onednn_sgemm(bool ta, bool tb, index_t m, index_t n, index_t k, float alpha, const float* a, index_t lda,
                         const float* b, index_t ldb, float beta, float* c, index_t ldc) {
  const onednn_one_thread one;
  return dnnl_sgemm(ta ? 'T' : 'N', tb ? 'T' : 'N', m, n, k, alpha, a, lda, b, ldb, beta, c, ldc) == dnnl_success;
}
#else
inline constexpr bool has_onednn = false;
#endif

}  // namespace dp::inline DP_ABI::detail

namespace dp::inline DP_ABI {

/// Whether float GEMMs of the shapes oneDNN is faster on go to oneDNN (dp built with it, and not
/// switched off by use_onednn(false) or DP_ONEDNN=0).
inline bool onednn_enabled() { return detail::has_onednn && detail::onednn_switch().load(std::memory_order_relaxed); }

/// Switches the oneDNN path on or off for the process (no effect in a build without oneDNN). oneDNN
/// generates a family of kernels on its first GEMM of each kind: 20-45 ms once per process for its
/// NN/TN products on the machines measured (2-5 ms for a small x W^T); in a build with LIBXSMM the
/// small NN/TN products never reach it. A job of well under a second may run faster without it. The
/// libraries round differently, so switch before training, not during it.
inline void use_onednn(bool on) { detail::onednn_switch().store(on, std::memory_order_relaxed); }

}  // namespace dp::inline DP_ABI
