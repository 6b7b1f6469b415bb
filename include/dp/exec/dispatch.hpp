// The one device branch. Executors overload their entry points on a target (host_target: the
// vectorised thread-pool loops; cuda_target: kernels on the device's stream) and callers write
// `on_device(d, [&](auto on) { entry(on, ...); })`, so no pass writes the cpu-or-cuda branch again.
// A build without CUDA never instantiates the CUDA side and reports a CUDA device as unusable.
#pragma once

#include <cstdlib>

#include <dp/config.hpp>
#include <dp/core/device.hpp>

namespace dp::inline DP_ABI::detail {

struct host_target {};
struct cuda_target {
  int index;
};

/// Calls f(host_target{}) or f(cuda_target{index}) for `d`.
template <class F>
decltype(auto) on_device(device d, F&& f) {
  if (d.is_cpu()) {
    return f(host_target{});
  }
#if DP_HAS_CUDA
  return f(cuda_target{d.index});
#else
  require_usable(d);  // throws: this translation unit was compiled without CUDA
  std::abort();       // unreachable
#endif
}

}  // namespace dp::inline DP_ABI::detail
