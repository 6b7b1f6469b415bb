// Float GEMMs of small shapes through LIBXSMM's JIT kernels, when dp is built with it
// (DP_HAS_LIBXSMM=1: CMake sets it when LIBXSMM is found; DP_WITH_LIBXSMM=OFF leaves it out).
//
// Why LIBXSMM and where (benchmarks/RESULTS.md, "GEMM by shape", one thread, both CPUs measured):
// on the non-transposed (NN) and transposed-A (TN) products of small MLPs, a linear layer's input and
// weight gradients, it is the fastest library measured (5-20% ahead of oneDNN and OpenBLAS, the
// thin 10-column ones included), and it generates one small kernel per shape in microseconds,
// where oneDNN's sgemm generates its whole NN/TN kernel family on its first call (20-45 ms, a fifth
// of a job as short as the digits example). Its kernels take neither a transposed B (a linear
// layer's forward: oneDNN keeps those) nor alpha != 1 or beta other than 0 and 1, and it loses on
// large products: those stay with oneDNN and OpenBLAS.
#pragma once

#include <dp/config.hpp>
#include <dp/core/error.hpp>

#if DP_HAS_LIBXSMM
#include <libxsmm.h>
#endif

namespace dp::inline DP_ABI::detail {

/// The most multiply-adds of a product LIBXSMM takes (the measured small shapes reach 2^20; the
/// large MLP's 2^25 and more lose to oneDNN).
inline constexpr index_t libxsmm_max_macs = index_t{1} << 21;

/// Whether LIBXSMM computes C = alpha op(A) op(B) + beta C (row-major, m x n x k), when dp has it.
constexpr bool libxsmm_takes(bool tb, index_t m, index_t n, index_t k, float alpha, float beta) {
  return !tb && alpha == 1.f && (beta == 0.f || beta == 1.f) && m * n * k <= libxsmm_max_macs;
}

#if DP_HAS_LIBXSMM
inline constexpr bool has_libxsmm = true;

/// C = op(A) B + beta C, all row-major, through LIBXSMM; false when it has no kernel for the shape
/// (the caller then uses another library: the result is the same product). LIBXSMM is
/// column-major: C^T = B^T op(A)^T, so B's storage is its first operand and A's its second, and a
/// transposed A is its transposed second operand.
inline bool libxsmm_sgemm(bool ta, index_t m, index_t n, index_t k, const float* a, index_t lda, const float* b,
                          index_t ldb, float beta, float* c, index_t ldc) {
  const float alpha = 1;
  const int flags = ta ? LIBXSMM_GEMM_FLAG_TRANS_B : 0;
  const libxsmm_blasint first_ld = ldb, second_ld = lda, c_ld = ldc;
  const libxsmm_smmfunction kernel = libxsmm_smmdispatch(
      static_cast<libxsmm_blasint>(n), static_cast<libxsmm_blasint>(m), static_cast<libxsmm_blasint>(k), &first_ld,
      &second_ld, &c_ld, &alpha, &beta, &flags, nullptr);
  if (kernel == nullptr) {
    return false;
  }
  kernel(b, a, c);
  // The kernels leave the upper halves of the vector registers dirty (no vzeroupper): SSE code after
  // them (dp's loops in a build without -mavx) then runs several times slower, a false dependency
  // on every instruction (measured: the optimizer's update 4x slower in the digits example).
  static const bool avx = libxsmm_get_target_archid() >= LIBXSMM_X86_AVX;
  if (avx) {
    asm volatile("vzeroupper" ::: "memory");
  }
  return true;
}
#else
inline constexpr bool has_libxsmm = false;
#endif

}  // namespace dp::inline DP_ABI::detail
