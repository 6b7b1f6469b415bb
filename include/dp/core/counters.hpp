// Test-build counters: how many element-wise passes (CPU loops or kernel launches) ran and how many
// real allocations (pool misses) happened. They prove fusion and the allocation-free training step.
#pragma once

#include <atomic>
#include <cstdint>

#include <dp/config.hpp>

namespace dp::inline DP_ABI {

/// A snapshot of the counters. All zero unless built with DP_ENABLE_COUNTERS=1.
struct counter_values {
  std::int64_t passes = 0;                ///< element-wise/reduction passes over memory (CPU loops, kernel launches)
  std::int64_t broadcast_row_passes = 0;  ///< host element-wise passes vectorised over values broadcast along rows
  std::int64_t gemms = 0;                 ///< GEMM calls (matrix products; each split part is not counted again)
  std::int64_t onednn_gemms = 0;          ///< host GEMM calls (or split parts) that oneDNN computed
  std::int64_t libxsmm_gemms = 0;         ///< host GEMM calls (or split parts) that LIBXSMM computed
  std::int64_t openblas_gemms = 0;        ///< host GEMM calls (or split parts) that OpenBLAS (CBLAS) computed
  std::int64_t allocations = 0;           ///< memory taken from the system (pool misses)
  std::int64_t pool_hits = 0;             ///< requests served from the caching pool
  std::int64_t batch_parts = 0;           ///< parts of a batched product spread over threads (whole products each)
};

namespace detail {
struct counter_cells {
  std::atomic<std::int64_t> passes{0}, broadcast_row_passes{0}, gemms{0}, onednn_gemms{0}, libxsmm_gemms{0},
      openblas_gemms{0}, allocations{0}, pool_hits{0}, batch_parts{0};
};
inline counter_cells& counter_storage() {
  static counter_cells c;
  return c;
}
}  // namespace detail

/// The counters since the last reset.
inline counter_values counters() {
  auto& c = detail::counter_storage();
  return {c.passes.load(),        c.broadcast_row_passes.load(), c.gemms.load(),       c.onednn_gemms.load(),
          c.libxsmm_gemms.load(), c.openblas_gemms.load(),       c.allocations.load(), c.pool_hits.load(),
          c.batch_parts.load()};
}

inline void reset_counters() {
  auto& c = detail::counter_storage();
  c.passes = 0;
  c.broadcast_row_passes = 0;
  c.gemms = 0;
  c.onednn_gemms = 0;
  c.libxsmm_gemms = 0;
  c.openblas_gemms = 0;
  c.allocations = 0;
  c.pool_hits = 0;
  c.batch_parts = 0;
}

}  // namespace dp::inline DP_ABI

#if DP_ENABLE_COUNTERS
#define DP_COUNT(field, n) ::dp::detail::counter_storage().field.fetch_add((n), std::memory_order_relaxed)
#else
#define DP_COUNT(field, n) ((void)0)
#endif
