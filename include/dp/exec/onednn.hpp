// Float GEMMs of small and medium shapes through oneDNN (libdnnl), when dp is built with it
// (DP_HAS_ONEDNN=1: CMake sets it when oneDNN is found; DP_WITH_ONEDNN=OFF leaves it out).
//
// Why oneDNN and where (benchmarks/RESULTS.md, "GEMM by shape", one thread): on the shapes of small
// MLPs it takes 65-80% of OpenBLAS's time, the transposed-B products of every linear layer's
// forward included, which LIBXSMM's JIT kernels cannot take without a copy; on large shapes it is
// as fast or faster. Its calls cost more than OpenBLAS's, which wins on products with a side under
// 16 or under 2^17 multiply-adds: those stay with OpenBLAS. Double stays with OpenBLAS (oneDNN has
// no dgemm). How dp calls it: exec/onednn_matmul.hpp.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <string_view>

#include <dp/config.hpp>
#include <dp/core/error.hpp>

#if DP_HAS_ONEDNN
#include <dp/exec/onednn_matmul.hpp>
#endif

namespace dp::inline DP_ABI::detail {

/// Whether oneDNN computes an m x n x k float product, when dp has it (the rule measured above).
constexpr bool onednn_takes(index_t m, index_t n, index_t k) {
  return std::min({m, n, k}) >= 16 && m * n * k >= (index_t{1} << 17);
}

/// DP_ONEDNN's value at start: unset or empty is on; "1" on, "0" off (GEMMs through OpenBLAS only).
inline bool onednn_env(const char* v) {
  const std::string_view s = v == nullptr ? "" : v;
  DP_CHECK(s.empty() || s == "0" || s == "1", value_error,
           "dp: the environment variable DP_ONEDNN must be 0 (every GEMM through OpenBLAS) or 1 (oneDNN for the "
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
#else
inline constexpr bool has_onednn = false;
#endif

}  // namespace dp::inline DP_ABI::detail

namespace dp::inline DP_ABI {

/// Whether float GEMMs of the shapes oneDNN is faster on go to oneDNN (dp built with it, and not
/// switched off by use_onednn(false) or DP_ONEDNN=0).
inline bool onednn_enabled() { return detail::has_onednn && detail::onednn_switch().load(std::memory_order_relaxed); }

/// Switches the oneDNN path on or off for the process (no effect in a build without oneDNN). The two
/// libraries round differently, so switch before training, not during it: with it off, every GEMM
/// goes to OpenBLAS (to compare with a build without oneDNN, or to leave oneDNN's start-up of about
/// 1 ms and 0.1-0.3 ms per new product shape out of a very short job).
inline void use_onednn(bool on) { detail::onednn_switch().store(on, std::memory_order_relaxed); }

}  // namespace dp::inline DP_ABI
