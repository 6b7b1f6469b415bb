// dp::device: where a tensor lives and where work runs. Host workers (cpu:0, cpu:1, ...) are logical
// devices on the host, so data parallelism over cores uses the same code as over GPUs.
#pragma once

#include <cstdlib>
#include <ostream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <dp/config.hpp>
#include <dp/core/error.hpp>

#if DP_HAS_CUDA
#include <cuda_runtime.h>
#endif

namespace dp::inline DP_ABI {

enum class device_kind : std::uint8_t { cpu, cuda };

/// A device: the host (or one of its logical workers) or one CUDA GPU.
struct device {
  device_kind kind = device_kind::cpu;
  int index = 0;

  constexpr bool is_cpu() const noexcept { return kind == device_kind::cpu; }
  constexpr bool is_cuda() const noexcept { return kind == device_kind::cuda; }
  friend constexpr bool operator==(device a, device b) noexcept = default;

  std::string str() const { return (is_cpu() ? "cpu:" : "cuda:") + std::to_string(index); }
  friend std::ostream& operator<<(std::ostream& os, device d) { return os << d.str(); }
};

/// The host, or host worker `worker`.
constexpr device cpu(int worker = 0) noexcept { return device{device_kind::cpu, worker}; }

/// CUDA device `index`. Using it in a build without CUDA throws dp::device_error at first use.
constexpr device cuda(int index = 0) noexcept { return device{device_kind::cuda, index}; }

/// Number of CUDA devices this process sees (0 in a build without CUDA or without a driver).
inline int cuda_device_count() {
#if DP_HAS_CUDA
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    (void)cudaGetLastError();
    return 0;
  }
  return n;
#else
  return 0;
#endif
}

/// Throws unless this translation unit can run work on `d`.
inline void require_usable(device d) {
#if !DP_HAS_CUDA
  DP_CHECK(!d.is_cuda(), device_error, "dp: ", d,
           " was asked for, but this file was compiled without CUDA (compile it with nvcc and link dp::cuda)");
#endif
  DP_CHECK(d.index >= 0, device_error, "dp: device index ", d.index, " is negative");
}

/// Parses "cpu", "cpu:3", "cuda:1".
inline device parse_device(std::string_view s) {
  auto number = [&](std::string_view digits) {
    DP_CHECK(!digits.empty() && digits.find_first_not_of("0123456789") == std::string_view::npos, value_error,
             "dp: cannot read a device from '", s, "' (expected cpu, cpu:N or cuda:N)");
    return std::stoi(std::string(digits));
  };
  if (s == "cpu") {
    return cpu();
  }
  if (s.starts_with("cpu:")) {
    return cpu(number(s.substr(4)));
  }
  if (s == "cuda") {
    return cuda();
  }
  if (s.starts_with("cuda:")) {
    return cuda(number(s.substr(5)));
  }
  throw value_error(detail::concat("dp: cannot read a device from '", s, "' (expected cpu, cpu:N or cuda:N)"));
}

/// Parses a device list: "cpu:4" (host workers 0..3), "cuda:0,1", "cuda" (every GPU), "cpu:0,cpu:2".
inline std::vector<device> parse_devices(std::string_view spec) {
  std::vector<device> out;
  DP_CHECK(!spec.empty(), value_error, "dp: empty device list (expected e.g. cpu:4 or cuda:0,1)");
  if (spec.starts_with("cpu:") && spec.find(',') == std::string_view::npos) {
    const int n = parse_device(spec).index;
    DP_CHECK(n >= 1, value_error, "dp: '", spec, "' asks for ", n, " host workers (expected at least 1)");
    for (int i = 0; i < n; ++i) {
      out.push_back(cpu(i));
    }
    return out;
  }
  if (spec == "cuda") {
    for (int i = 0; i < cuda_device_count(); ++i) {
      out.push_back(cuda(i));
    }
    DP_CHECK(!out.empty(), device_error, "dp: 'cuda' was asked for but no CUDA device is visible");
    return out;
  }
  device_kind last = device_kind::cpu;
  std::size_t pos = 0;
  while (pos <= spec.size()) {
    std::size_t comma = spec.find(',', pos);
    if (comma == std::string_view::npos) {
      comma = spec.size();
    }
    std::string_view item = spec.substr(pos, comma - pos);
    // "cuda:0,1": a bare number continues the previous kind.
    if (!item.empty() && item.find_first_not_of("0123456789") == std::string_view::npos && !out.empty()) {
      out.push_back(device{last, std::stoi(std::string(item))});
    } else {
      out.push_back(parse_device(item));
    }
    last = out.back().kind;
    pos = comma + 1;
  }
  return out;
}

/// Every visible CUDA device; else one host worker per hardware thread. DP_DEVICES overrides
/// ("cpu:7" for workers 0..6, "cuda:0,1").
inline std::vector<device> devices() {
  if (const char* env = std::getenv("DP_DEVICES"); env && *env) {
    return parse_devices(env);
  }
  std::vector<device> out;
  for (int i = 0; i < cuda_device_count(); ++i) {
    out.push_back(cuda(i));
  }
  if (out.empty()) {
    const int n = std::max(1u, std::thread::hardware_concurrency());
    for (int i = 0; i < n; ++i) {
      out.push_back(cpu(i));
    }
  }
  return out;
}

}  // namespace dp::inline DP_ABI
