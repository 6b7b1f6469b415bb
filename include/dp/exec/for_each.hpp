// for_each_index: a device-agnostic parallel loop over [0, n) with a functor callable on the host
// and the GPU. Kernels that are not element-wise expressions (im2col, pooling, gathers, fused
// optimizer updates) are written once as such functors and run on either device.
#pragma once

#include <atomic>
#include <cstdint>

#include <dp/config.hpp>
#include <dp/core/counters.hpp>
#include <dp/core/device.hpp>
#include <dp/core/shape.hpp>
#include <dp/exec/cpu.hpp>
#include <dp/exec/dispatch.hpp>
#include <dp/exec/thread_pool.hpp>

#if DP_HAS_CUDA
#include <dp/core/cuda_support.hpp>
#endif

namespace dp::inline DP_ABI::detail {

#if DP_HAS_CUDA
template <class F>
__global__ void for_each_kernel(index_t n, F f) {
  for (index_t i = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<index_t>(gridDim.x) * blockDim.x) {
    f(i);
  }
}

inline unsigned grid_for(index_t n, int block) {
  const index_t blocks = ceil_div(n, block);
  return static_cast<unsigned>(blocks < 65536 ? blocks : 65536);
}
#endif

/// Keeps the largest value stored to *flag by the threads of one pass: how a kernel reports bad
/// input (encoded so that the first bad element stores the largest value) without a host read.
DP_HOST_DEVICE inline void store_max(std::int64_t* flag, std::int64_t v) {
#if defined(__CUDA_ARCH__)
  atomicMax(reinterpret_cast<long long*>(flag), static_cast<long long>(v));
#else
  std::atomic_ref<std::int64_t> f(*flag);
  std::int64_t seen = f.load(std::memory_order_relaxed);
  while (seen < v && !f.compare_exchange_weak(seen, v, std::memory_order_relaxed)) {
  }
#endif
}

/// Calls f(i) for i in [0, n) on the host threads; `grain` is the smallest share worth a thread.
template <class F>
void for_each_index(host_target, index_t n, const F& f, index_t grain) {
  parallel_for(n, grain, [&](index_t b, index_t e) {
    const F local = f;  // a local copy: stores through its pointers cannot alias its members
    DP_IVDEP
    for (index_t i = b; i < e; ++i) {
      local(i);
    }
  });
}

#if DP_HAS_CUDA
/// Calls f(i) for i in [0, n) in one kernel on the target's stream.
template <class F>
void for_each_index(cuda_target on, index_t n, const F& f, index_t) {
  cuda_device_guard g(on.index);
  for_each_kernel<<<grid_for(n, 256), 256, 0, cuda_stream(on.index)>>>(n, f);
  DP_CUDA_CHECK(cudaGetLastError());
}
#endif

/// Calls f(i) for i in [0, n) on `d`; `grain` is the smallest share worth a host thread.
template <class F>
void for_each_index(device d, index_t n, const F& f, index_t grain = parallel_grain) {
  if (n <= 0) {
    return;
  }
  DP_COUNT(passes, 1);
  on_device(d, [&](auto on) { for_each_index(on, n, f, grain); });
}

}  // namespace dp::inline DP_ABI::detail
