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
      (void)cudaGetLastError(); /* said here: a later launch check must not report it as its own */               \
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

/// Throws when dp's stream on `index` is being captured into a CUDA graph: waiting for the device is
/// not allowed then (CUDA would end the capture with a bare error code).
inline void require_not_capturing(int index) {
  cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
  DP_CUDA_CHECK(cudaStreamIsCapturing(cuda_stream(index), &status));
  DP_CHECK(status == cudaStreamCaptureStatusNone, device_error, "dp: cuda:", index,
           " was asked for a result (a copy to or from the host, item(), to_vector(), a loss read back) while "
           "a CUDA graph is being captured on it; captured work must not wait for the device: use "
           "trainer.backward_async (the loss stays on the device) and read results after replay()");
}

/// Waits until everything dp has queued on the device is done.
inline void cuda_sync(int index) {
  require_not_capturing(index);
  DP_CUDA_CHECK(cudaStreamSynchronize(cuda_stream(index)));
}

/// Makes `waiter` wait (on the device, not the host) for the work queued on `producer` so far.
inline void cuda_stream_wait(cudaStream_t waiter, cudaStream_t producer) {
  if (waiter == producer) {
    return;
  }
  cudaEvent_t e = nullptr;
  DP_CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
  const cudaError_t recorded = cudaEventRecord(e, producer);
  const cudaError_t waited = recorded == cudaSuccess ? cudaStreamWaitEvent(waiter, e, 0) : recorded;
  (void)cudaEventDestroy(e);  // released once the wait is satisfied
  DP_CUDA_CHECK(waited);
}

}  // namespace dp::inline DP_ABI::detail
#endif
