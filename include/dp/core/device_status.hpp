// Faults a kernel can only flag. A CUDA kernel that meets input the hardware would silently give a
// number for (an integer division by zero: the GPU does not trap; a float cast to an integer type it
// does not fit: core/faults.hpp) stores the fault's code in its device's
// status word; the host raises the error at its next read of a result from that device (copy_bytes
// to the host: item(), to_vector(), a loss read back), as the host executor raises it after its pass.
// The words live in mapped pinned host memory: the kernel writes them directly and the host reads
// them after the synchronisation a read needs anyway, with no copy. Only in files compiled by nvcc.
#pragma once

#include <dp/config.hpp>

#if DP_HAS_CUDA
#include <atomic>
#include <cstdint>
#include <cstring>
#include <mutex>

#include <cuda_runtime.h>

#include <dp/core/cuda_support.hpp>
#include <dp/core/device.hpp>
#include <dp/core/error.hpp>
#include <dp/core/faults.hpp>

namespace dp::inline DP_ABI::detail {

/// One word per device; non-zero is the code of a fault a kernel met there (core/faults.hpp).
struct status_words {
  std::int64_t* host = nullptr;    // max_cuda_devices words, read by the host
  std::int64_t* device = nullptr;  // the same words as kernels address them
};

/// The words, allocated on first use (once per process, for every device); null until then.
inline std::atomic<const status_words*>& status_words_ptr() noexcept {
  static std::atomic<const status_words*> p{nullptr};
  return p;
}

/// The address a kernel on cuda:`index` stores its fault code at.
inline std::int64_t* device_status_word(int index) {
  const status_words* w = status_words_ptr().load(std::memory_order_acquire);
  if (w == nullptr) {
    static std::mutex m;
    static status_words words;
    std::lock_guard lock(m);
    w = status_words_ptr().load();
    if (w == nullptr) {
      void* p = nullptr;
      DP_CUDA_CHECK(
          cudaHostAlloc(&p, sizeof(std::int64_t) * max_cuda_devices, cudaHostAllocMapped | cudaHostAllocPortable));
      std::memset(p, 0, sizeof(std::int64_t) * max_cuda_devices);
      void* d = nullptr;
      DP_CUDA_CHECK(cudaHostGetDevicePointer(&d, p, 0));
      words = {static_cast<std::int64_t*>(p), static_cast<std::int64_t*>(d)};
      status_words_ptr().store(&words, std::memory_order_release);
      w = &words;
    }
  }
  return w->device + index;
}

/// Throws (once) for a fault flagged on cuda:`index` by work that has finished: call after a
/// synchronisation.
inline void check_device_status(int index) {
  const status_words* w = status_words_ptr().load(std::memory_order_acquire);
  if (w == nullptr) {
    return;  // no kernel was ever given a word
  }
  volatile std::int64_t* word = w->host + index;
  const std::int64_t code = *word;
  if (code != 0) [[unlikely]] {
    *word = 0;
    raise<value_error>("dp: on cuda:", index,
                       ", in a pass queued before this read (the host would have raised this "
                       "at once): ",
                       fault_message(code));
  }
}

}  // namespace dp::inline DP_ABI::detail
#endif
