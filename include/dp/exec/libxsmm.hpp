// Float GEMMs of small shapes through LIBXSMM's JIT kernels, when dp is built with it
// (DP_HAS_LIBXSMM=1: CMake sets it when LIBXSMM is found; DP_WITH_LIBXSMM=OFF leaves it out).
//
// Why LIBXSMM and where (benchmarks/RESULTS.md, "GEMM by shape", one thread, both CPUs measured):
// on the non-transposed (NN) and transposed-A (TN) products of small MLPs, a linear layer's input and
// weight gradients, it is the fastest library measured (5-20% ahead of oneDNN and OpenBLAS, the
// thin 10-column ones included), and it generates one small kernel per shape in microseconds,
// where oneDNN's sgemm generates its whole NN/TN kernel family on its first call (20-45 ms, a fifth
// of a job as short as the digits example). Its kernels take neither a transposed B (a linear
// layer's forward: oneDNN keeps those, and OpenBLAS the narrow ones, which LIBXSMM takes through a
// copy only while OpenBLAS runs generic kernels) nor alpha != 1 or beta other than 0 and 1, and it
// loses on large products: those stay with oneDNN and OpenBLAS.
#pragma once

#include <algorithm>
#include <mutex>

#include <dp/config.hpp>
#include <dp/core/error.hpp>

#if DP_HAS_LIBXSMM
// libxsmm.h defines __has_feature (as 0 under GCC), _REENTRANT and __STDC_FORMAT_MACROS; they stay
// inside it instead of reaching every file that includes dp.
#pragma push_macro("__has_feature")
#pragma push_macro("_REENTRANT")
#pragma push_macro("__STDC_FORMAT_MACROS")
#include <libxsmm.h>
#pragma pop_macro("__STDC_FORMAT_MACROS")
#pragma pop_macro("_REENTRANT")
#pragma pop_macro("__has_feature")
#endif

namespace dp::inline DP_ABI::detail {

/// The most multiply-adds of a product (or of one part of a product split over threads) LIBXSMM
/// takes (the measured small shapes reach 2^20; the large MLP's 2^25 and more lose to oneDNN).
inline constexpr index_t libxsmm_max_macs = index_t{1} << 21;

/// Whether LIBXSMM computes C = alpha op(A) op(B) + beta C (row-major, m x n x k), when dp has it.
constexpr bool libxsmm_takes(bool tb, index_t m, index_t n, index_t k, float alpha, float beta) {
  return !tb && alpha == 1.f && (beta == 0.f || beta == 1.f) && m * n * k <= libxsmm_max_macs;
}

/// The most values of B a transposed-B product copies (on the stack, 32 KiB: a scratch kept per thread
/// would allocate on the first call of each thread that takes one, in whatever step that is).
inline constexpr index_t libxsmm_max_copy = index_t{1} << 13;

/// Whether LIBXSMM computes C = op(A) B^T + beta C (B stored n x k) through a copy of B transposed,
/// asked only while OpenBLAS, which takes such products by the rules, runs generic kernels
/// (exec/openblas.hpp): an output under 16 columns (a classifier's forward) and a copy of at most
/// libxsmm_max_copy values. There oneDNN's first call generates a kernel family (27-32 ms measured for
/// 32x10x256 on the Emerald Rapids VM, longer than a 0.15 s training run saves), the copy of 2,560
/// values is cheap, and the product took 2.0-4.0 us against oneDNN's 2.7-5.7 and generic OpenBLAS's
/// 8.2-16.4.
constexpr bool libxsmm_takes_transposed(index_t m, index_t n, index_t k, float alpha, float beta) {
  return n < 16 && n * k <= libxsmm_max_copy && libxsmm_takes(false, m, n, k, alpha, beta);
}

/// Whether LIBXSMM's kernels can address the operands: its generator encodes the byte offset of a
/// row or column (up to the longest side times a leading dimension) as a 32-bit immediate, so a
/// narrow view of a very wide matrix would read wrong addresses. Such products go to another library.
constexpr bool libxsmm_addressable(index_t m, index_t n, index_t k, index_t lda, index_t ldb, index_t ldc) {
  return std::max({lda, ldb, ldc}) * std::max({m, n, k}) * index_t{sizeof(float)} < (index_t{1} << 31);
}

#if DP_HAS_LIBXSMM
inline constexpr bool has_libxsmm = true;

/// What a kernel was generated for.
struct libxsmm_key {
  index_t m = 0, n = 0, k = 0, lda = 0, ldb = 0, ldc = 0;
  bool ta = false, beta0 = false;
  bool operator==(const libxsmm_key&) const = default;
};

/// A thread's last kernels.
struct libxsmm_kept {
  static constexpr int size = 16;
  libxsmm_key keys[size]{};
  libxsmm_smmfunction kernels[size]{};
  int used = 0, next = 0;
};

/// The kernel for `key`, or null when LIBXSMM has none. Each thread keeps the kernels it used last,
/// and asks LIBXSMM's dispatch under one lock only for a new one: dispatch's own per-thread cache
/// is indexed by the count of threads that ever called it modulo 1024, so in a process that has
/// started more threads than that, two live threads would share (and race on) one entry.
inline libxsmm_smmfunction libxsmm_kernel(const libxsmm_key& key) {
  thread_local libxsmm_kept kept{};
  for (int i = 0; i < kept.used; ++i) {
    if (kept.keys[i] == key) {
      return kept.kernels[i];
    }
  }
  // LIBXSMM is column-major: C^T = B^T op(A)^T, so B's storage is its first operand and A's its
  // second, and a transposed A is its transposed second operand.
  const float alpha = 1, beta = key.beta0 ? 0.f : 1.f;
  const int flags = key.ta ? LIBXSMM_GEMM_FLAG_TRANS_B : 0, prefetch = LIBXSMM_GEMM_PREFETCH_NONE;
  const auto blas = [](index_t v) { return static_cast<libxsmm_blasint>(v); };
  const libxsmm_blasint first_ld = blas(key.ldb), second_ld = blas(key.lda), c_ld = blas(key.ldc);
  libxsmm_smmfunction kernel = nullptr;
  {
    static std::mutex dispatching;
    const std::lock_guard lock(dispatching);
    kernel = libxsmm_smmdispatch(blas(key.n), blas(key.m), blas(key.k), &first_ld, &second_ld, &c_ld, &alpha, &beta,
                                 &flags, &prefetch);
  }
  kept.keys[kept.next] = key;
  kept.kernels[kept.next] = kernel;
  kept.next = (kept.next + 1) % libxsmm_kept::size;
  kept.used = std::min(kept.used + 1, libxsmm_kept::size);
  return kernel;
}

/// C = op(A) B + beta C (beta 0 or 1), all row-major, through LIBXSMM; false when it has no kernel
/// for the product (the caller then uses another library: the result is the same product).
inline bool libxsmm_sgemm(bool ta, index_t m, index_t n, index_t k, const float* a, index_t lda, const float* b,
                          index_t ldb, float beta, float* c, index_t ldc) {
  if (!libxsmm_addressable(m, n, k, lda, ldb, ldc)) {
    return false;
  }
  const libxsmm_smmfunction kernel = libxsmm_kernel({m, n, k, lda, ldb, ldc, ta, beta == 0.f});
  if (kernel == nullptr) {
    return false;
  }
  kernel(b, a, c);
  // The kernels leave the upper halves of the vector registers dirty (no vzeroupper): SSE code after
  // them (dp's loops in a build without -mavx) then runs several times slower, a false dependency
  // on every instruction (measured: the optimizer's update 4x slower in the digits example). The
  // clobbers tell the compiler that no vector value it holds survives.
  static const bool avx = libxsmm_get_target_archid() >= LIBXSMM_X86_AVX;
  if (avx) {
    asm volatile("vzeroupper" ::
                     : "memory", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9",
                       "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15");
  }
  return true;
}
/// libxsmm_sgemm with B stored transposed (n x k, leading dimension ldb): B is copied to k x n on the
/// stack first; false (nothing computed) when it has more than libxsmm_max_copy values.
inline bool libxsmm_sgemm_transposed_b(bool ta, index_t m, index_t n, index_t k, const float* a, index_t lda,
                                       const float* b, index_t ldb, float beta, float* c, index_t ldc) {
  if (n * k > libxsmm_max_copy) {
    return false;
  }
  alignas(64) float bt[libxsmm_max_copy];
  for (index_t j = 0; j < n; ++j) {
    for (index_t p = 0; p < k; ++p) {
      bt[p * n + j] = b[j * ldb + p];
    }
  }
  return libxsmm_sgemm(ta, m, n, k, a, lda, bt, n, beta, c, ldc);
}
#else
inline constexpr bool has_libxsmm = false;
#endif

}  // namespace dp::inline DP_ABI::detail
