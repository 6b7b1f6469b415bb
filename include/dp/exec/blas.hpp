// GEMM through CBLAS (OpenBLAS) on the host, with LIBXSMM and oneDNN for the float shapes they are
// faster on when dp is built with them (exec/libxsmm.hpp, exec/onednn.hpp), and cuBLAS on CUDA. Operands are described
// by pointer, leading dimension and a transpose flag, so transposed views are passed without copies.
//
// Host threading: dp splits a GEMM over its own thread pool and keeps OpenBLAS single-threaded.
// One owner of the cores means host workers of dp::parallel can call GEMMs side by side without
// oversubscribing them or serialising inside OpenBLAS.
#pragma once

#include <algorithm>
#include <limits>
#include <mutex>

#include <cblas.h>

#include <dp/config.hpp>
#include <dp/core/counters.hpp>
#include <dp/core/device.hpp>
#include <dp/core/error.hpp>
#include <dp/core/memory.hpp>
#include <dp/exec/dispatch.hpp>
#include <dp/exec/fp_env.hpp>
#include <dp/exec/libxsmm.hpp>
#include <dp/exec/onednn.hpp>
#include <dp/exec/openblas.hpp>
#include <dp/exec/thread_pool.hpp>

#if DP_HAS_CUDA
#include <array>

#include <cublas_v2.h>

#include <dp/core/cuda_support.hpp>
#endif

namespace dp::inline DP_ABI::detail {

/// A row-major matrix operand: op(X) is rows x cols; X itself is stored with leading dimension ld.
template <class T>
struct mat_ref {
  T* data;
  index_t rows, cols, ld;
  bool trans;  // true: the stored matrix is op(X)^T (column-major view of op(X))
};

/// One GEMM on the calling thread: LIBXSMM or oneDNN where they are faster (float), else CBLAS. While
/// OpenBLAS runs generic kernels (exec/openblas.hpp), the float products the rules leave to it go to
/// LIBXSMM through a copy (narrow x W^T) or to oneDNN.
template <class T>
void host_gemm_one(const mat_ref<const T>& a, const mat_ref<const T>& b, const mat_ref<T>& c, T alpha, T beta) {
  [[maybe_unused]] const bool generic =
      std::is_same_v<T, float> && openblas_generic_switch().load(std::memory_order_relaxed);
#if DP_HAS_LIBXSMM
  if constexpr (std::is_same_v<T, float>) {
    const index_t m = c.rows, n = c.cols, k = a.cols;
    if (!c.trans && libxsmm_takes(b.trans, m, n, k, alpha, beta) &&
        libxsmm_sgemm(a.trans, m, n, k, a.data, a.ld, b.data, b.ld, beta, c.data, c.ld)) {
      DP_COUNT(libxsmm_gemms, 1);
      return;
    }
    if (generic && !c.trans && b.trans && libxsmm_takes_transposed(m, n, k, alpha, beta) &&
        libxsmm_sgemm_transposed_b(a.trans, m, n, k, a.data, a.ld, b.data, b.ld, beta, c.data, c.ld)) {
      DP_COUNT(libxsmm_gemms, 1);
      return;
    }
  }
#endif
#if DP_HAS_ONEDNN
  if constexpr (std::is_same_v<T, float>) {
    if ((generic || onednn_takes(c.rows, c.cols, a.cols)) && onednn_enabled() &&
        onednn_sgemm(a.trans, b.trans, c.rows, c.cols, a.cols, alpha, a.data, a.ld, b.data, b.ld, beta, c.data, c.ld)) {
      DP_COUNT(onednn_gemms, 1);
      return;
    }
  }
#endif
  DP_COUNT(openblas_gemms, 1);
  const auto ta = a.trans ? CblasTrans : CblasNoTrans, tb = b.trans ? CblasTrans : CblasNoTrans;
  const int m = static_cast<int>(c.rows), n = static_cast<int>(c.cols), k = static_cast<int>(a.cols);
  if constexpr (std::is_same_v<T, float>) {
    cblas_sgemm(CblasRowMajor, ta, tb, m, n, k, alpha, a.data, static_cast<int>(a.ld), b.data, static_cast<int>(b.ld),
                beta, c.data, static_cast<int>(c.ld));
  } else {
    cblas_dgemm(CblasRowMajor, ta, tb, m, n, k, alpha, a.data, static_cast<int>(a.ld), b.data, static_cast<int>(b.ld),
                beta, c.data, static_cast<int>(c.ld));
  }
}

/// Rows [r0, r1) of op(X).
template <class T>
mat_ref<T> row_block(const mat_ref<T>& x, index_t r0, index_t r1) {
  mat_ref<T> r = x;
  r.data = x.data + (x.trans ? r0 : r0 * x.ld);
  r.rows = r1 - r0;
  return r;
}
/// Columns [c0, c1) of op(X).
template <class T>
mat_ref<T> col_block(const mat_ref<T>& x, index_t c0, index_t c1) {
  mat_ref<T> r = x;
  r.data = x.data + (x.trans ? c0 * x.ld : c0);
  r.cols = c1 - c0;
  return r;
}

/// Below this many multiply-adds a GEMM runs on one thread.
inline constexpr index_t gemm_parallel_macs = 1 << 20;
/// Rows or columns per part of a split GEMM: a multiple of the BLAS kernel width.
inline constexpr index_t gemm_split_unit = 64;

/// The parts the host GEMM splits an m x n x k product into along the larger of m and n: at most
/// one per thread, each of gemm_split_unit rows or columns and gemm_parallel_macs multiply-adds.
inline index_t gemm_parts(index_t m, index_t n, index_t k) {
  const index_t split = std::max(m, n);
  return std::min<index_t>({static_cast<index_t>(num_threads()), (split + gemm_split_unit - 1) / gemm_split_unit,
                            std::max<index_t>(1, m * n * k / gemm_parallel_macs)});
}

/// C = alpha op(A) op(B) + beta C on the host, split over the thread pool along the larger of M, N.
template <class T>
void gemm(host_target, const mat_ref<const T>& a, const mat_ref<const T>& b, const mat_ref<T>& c, T alpha, T beta) {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>, "dp: matmul supports float and double");
  blas_single_thread_once();
  DP_COUNT(gemms, 1);
  const host_fp_scope fp;
  const index_t m = c.rows, n = c.cols, k = a.cols;
  if (m == 0 || n == 0) {
    return;
  }
  if (k == 0) {  // BLAS would still scale by beta; make that explicit
    for (index_t i = 0; i < m; ++i) {
      for (index_t j = 0; j < n; ++j) {
        T& v = c.data[c.trans ? j * c.ld + i : i * c.ld + j];
        v = beta == T(0) ? T(0) : v * beta;
      }
    }
    return;
  }
  const index_t split = std::max(m, n), unit = gemm_split_unit;
  const index_t parts = gemm_parts(m, n, k);
  if (parts <= 1) {
    host_gemm_one(a, b, c, alpha, beta);
    return;
  }
  const bool by_rows = m >= n;
  parallel_for(parts, 1, [&](index_t pb, index_t pe) {
    for (index_t p = pb; p < pe; ++p) {
      const index_t lo = (split * p / parts) / unit * unit,
                    hi = p + 1 == parts ? split : (split * (p + 1) / parts) / unit * unit;
      if (hi <= lo) {
        continue;
      }
      if (by_rows) {
        host_gemm_one(row_block(a, lo, hi), b, row_block(c, lo, hi), alpha, beta);
      } else {
        host_gemm_one(a, col_block(b, lo, hi), col_block(c, lo, hi), alpha, beta);
      }
    }
  });
}

#if DP_HAS_CUDA
#define DP_CUBLAS_CHECK(expr)                                                                                  \
  do {                                                                                                         \
    const cublasStatus_t dp_st_ = (expr);                                                                      \
    if (dp_st_ != CUBLAS_STATUS_SUCCESS) [[unlikely]] {                                                        \
      ::dp::detail::raise<::dp::device_error>("dp: cuBLAS call ", #expr, " failed with status ", int(dp_st_)); \
    }                                                                                                          \
  } while (0)

/// One cuBLAS handle per device, bound to dp's stream for that device.
inline cublasHandle_t cublas_handle(int dev) {
  static std::array<cublasHandle_t, max_cuda_devices> handles{};
  static std::mutex m;
  std::lock_guard lock(m);
  if (!handles[dev]) {
    cuda_device_guard g(dev);
    // Made and set up whole before it is kept: a failure part-way (no memory for the workspace)
    // must not leave a handle on the default stream, or without its workspace, for the next call.
    cublasHandle_t h = nullptr;
    storage_ref ws;
    try {
      DP_CUBLAS_CHECK(cublasCreate(&h));
      DP_CUBLAS_CHECK(cublasSetStream(h, cuda_stream(dev)));
      // No atomics (cuBLAS's default, stated): with one stream and a fixed workspace per handle,
      // cuBLAS gives the same bits on every run on one GPU architecture (the deterministic mode).
      DP_CUBLAS_CHECK(cublasSetAtomicsMode(h, CUBLAS_ATOMICS_NOT_ALLOWED));
      // A workspace of the handle's own, so that cuBLAS never allocates inside a captured CUDA
      // graph (32 MiB: NVIDIA's recommendation for Hopper), taken from dp's pool (whose rules
      // apply: cached blocks given back when the device is full, none taken while capturing).
      constexpr std::size_t workspace = std::size_t{32} << 20;
      ws = allocate(cuda(dev), workspace);
      DP_CUBLAS_CHECK(cublasSetWorkspace(h, ws.get()->data, workspace));
    } catch (...) {
      if (h) {
        cublasDestroy(h);  // before the workspace (released with `ws`) it may still point to
      }
      throw;
    }
    // It lives as long as the handle, for the process: neither is destroyed at exit, when the pool
    // may be gone already (hence an array never freed).
    static auto& workspaces = *new std::array<storage_ref, max_cuda_devices>();
    workspaces[dev] = std::move(ws);
    handles[dev] = h;
  }
  return handles[dev];
}

/// C = beta C in place, C row-major with leading dimension ld (cublas geam: C^T = beta C^T + 0 C^T).
template <class T>
void cuda_scale(const mat_ref<T>& c, T beta, int dev) {
  const T zero = T(0);
  const int m = static_cast<int>(c.rows), n = static_cast<int>(c.cols), ld = static_cast<int>(c.ld);
  cublasHandle_t h = cublas_handle(dev);
  if constexpr (std::is_same_v<T, float>) {
    DP_CUBLAS_CHECK(cublasSgeam(h, CUBLAS_OP_N, CUBLAS_OP_N, n, m, &beta, c.data, ld, &zero, c.data, ld, c.data, ld));
  } else {
    DP_CUBLAS_CHECK(cublasDgeam(h, CUBLAS_OP_N, CUBLAS_OP_N, n, m, &beta, c.data, ld, &zero, c.data, ld, c.data, ld));
  }
}

/// Row-major C = op(A) op(B) computed as column-major C^T = op(B)^T op(A)^T: the operands swap and
/// keep their flags and leading dimensions.
template <class T>
void gemm(cuda_target on, const mat_ref<const T>& a, const mat_ref<const T>& b, const mat_ref<T>& c, T alpha, T beta) {
  DP_COUNT(gemms, 1);
  const int dev = on.index;
  if (c.rows == 0 || c.cols == 0) {
    return;
  }
  cuda_device_guard g(dev);
  cublasHandle_t h = cublas_handle(dev);
  if (a.cols == 0) {  // an empty sum: C = beta C (cuBLAS rejects the leading dimensions of empty operands)
    if (beta == T(0)) {
      DP_CUDA_CHECK(cudaMemset2DAsync(c.data, static_cast<std::size_t>(c.ld) * sizeof(T), 0,
                                      static_cast<std::size_t>(c.cols) * sizeof(T), static_cast<std::size_t>(c.rows),
                                      cuda_stream(dev)));
    } else {
      cuda_scale(c, beta, dev);
    }
    return;
  }
  const auto ta = a.trans ? CUBLAS_OP_T : CUBLAS_OP_N, tb = b.trans ? CUBLAS_OP_T : CUBLAS_OP_N;
  const int m = static_cast<int>(c.rows), n = static_cast<int>(c.cols), k = static_cast<int>(a.cols);
  if constexpr (std::is_same_v<T, float>) {
    DP_CUBLAS_CHECK(cublasSgemm(h, tb, ta, n, m, k, &alpha, b.data, static_cast<int>(b.ld), a.data,
                                static_cast<int>(a.ld), &beta, c.data, static_cast<int>(c.ld)));
  } else {
    DP_CUBLAS_CHECK(cublasDgemm(h, tb, ta, n, m, k, &alpha, b.data, static_cast<int>(b.ld), a.data,
                                static_cast<int>(a.ld), &beta, c.data, static_cast<int>(c.ld)));
  }
}
#endif

/// C = alpha op(A) op(B) + beta C on device `d`. CBLAS and cuBLAS count in 32-bit int: a size or
/// leading dimension past that would be cut to another number (OpenBLAS prints a warning and
/// leaves C as it was), so it is an error here.
template <class T>
void gemm(device d, const mat_ref<const T>& a, const mat_ref<const T>& b, const mat_ref<T>& c, T alpha, T beta) {
  if (c.rows == 0 || c.cols == 0) {
    return;  // nothing to write, whatever the other sizes (no BLAS call)
  }
  constexpr index_t int_max = std::numeric_limits<int>::max();
  DP_CHECK(std::max({c.rows, c.cols, a.cols, a.ld, b.ld, c.ld}) <= int_max, shape_error, "dp: matrix product of [",
           c.rows, ", ", a.cols, "] and [", a.cols, ", ", c.cols, "] (leading dimensions ", a.ld, ", ", b.ld, ", ",
           c.ld, "): a size or leading dimension exceeds ", int_max,
           ", the largest the BLAS libraries take (32-bit int); split the product into smaller ones");
  on_device(d, [&](auto on) { gemm(on, a, b, c, alpha, beta); });
}

}  // namespace dp::inline DP_ABI::detail
