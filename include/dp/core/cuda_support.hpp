// CUDA runtime helpers shared by memory and executors: error checks, the current-device guard and
// one stream per device (all of dp's work on a device is ordered on it, which makes the caching
// allocator's reuse safe without events). Only in files compiled by nvcc.
#pragma once

#include <dp/config.hpp>

#if DP_HAS_CUDA
#include <array>
#include <atomic>
#include <mutex>

#include <cuda_runtime.h>

#include <dp/core/device.hpp>
#include <dp/core/error.hpp>

#define DP_CUDA_CHECK(expr)                                                                                       \
  do {                                                                                                            \
    const cudaError_t dp_err_ = (expr);                                                                           \
    if (dp_err_ != cudaSuccess) [[unlikely]] {                                                                    \
      ::dp::detail::raise<::dp::device_error>("dp: CUDA call ", #expr, " failed: ", cudaGetErrorString(dp_err_)); \
    }                                                                                                             \
  } while (0)

namespace dp::inline DP_ABI::detail {

/// Makes `index` the current CUDA device for the scope.
class cuda_device_guard {
 public:
  explicit cuda_device_guard(int index) {
    DP_CUDA_CHECK(cudaGetDevice(&prev_));
    if (prev_ != index) {
      DP_CUDA_CHECK(cudaSetDevice(index));
    }
    now_ = index;
  }
  ~cuda_device_guard() {
    if (prev_ != now_) {
      (void)cudaSetDevice(prev_);
    }
  }
  cuda_device_guard(const cuda_device_guard&) = delete;
  cuda_device_guard& operator=(const cuda_device_guard&) = delete;

 private:
  int prev_ = 0, now_ = 0;
};

/// The stream on which dp orders all work for a device.
inline cudaStream_t cuda_stream(int index) {
  static std::array<std::atomic<cudaStream_t>, max_cuda_devices> streams{};
  static std::mutex m;
  cudaStream_t s = streams[index].load(std::memory_order_acquire);
  if (!s) {
    std::lock_guard lock(m);
    s = streams[index].load();
    if (!s) {
      cuda_device_guard g(index);
      DP_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
      streams[index].store(s, std::memory_order_release);
    }
  }
  return s;
}

inline void cuda_sync(int index) { DP_CUDA_CHECK(cudaStreamSynchronize(cuda_stream(index))); }

}  // namespace dp::inline DP_ABI::detail
#endif
