// dp::device: where a tensor lives and where work runs. Host workers (cpu:0, cpu:1, ...) are logical
// devices on the host, so data parallelism over cores uses the same code as over GPUs.
#pragma once

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <optional>
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

/// The largest device counts dp supports: CUDA devices have one stream and one cuBLAS handle slot
/// each; host workers are threads, each with its own replica.
inline constexpr int max_cuda_devices = 64;
inline constexpr int max_host_workers = 1024;

/// How many devices of a kind dp addresses: their indices run from 0 to this minus 1.
constexpr int device_limit(device_kind k) noexcept {
  return k == device_kind::cuda ? max_cuda_devices : max_host_workers;
}

/// Throws unless `d`'s index is one dp addresses.
inline void require_index(device d) {
  const int limit = device_limit(d.kind);
  DP_CHECK(d.index >= 0 && d.index < limit, device_error, "dp: device index ", d.index, " of ", d,
           " is out of range (expected 0 to ", limit - 1, ")");
}

/// Throws unless this translation unit can run work on `d`, and `d` is a device this process sees.
inline void require_usable(device d) {
#if !DP_HAS_CUDA
  DP_CHECK(!d.is_cuda(), device_error, "dp: ", d,
           " was asked for, but this file was compiled without CUDA (compile it with nvcc and link dp::cuda)");
#endif
  require_index(d);
  if (d.is_cuda()) {
    static const int seen = cuda_device_count();  // fixed for the process (CUDA_VISIBLE_DEVICES is read once)
    DP_CHECK(d.index < seen, device_error, "dp: ", d, " was asked for, but this process sees ", seen, " GPU(s)",
             seen > 0 ? detail::concat(" (cuda:0 to cuda:", seen - 1, ")") : std::string(),
             "; check CUDA_VISIBLE_DEVICES and that the driver sees the GPU (nvidia-smi)");
  }
}

namespace detail {
inline constexpr const char* device_grammar =
    "a comma-separated list of KIND:INDEX or KIND:FIRST-LAST (KIND is cpu or cuda; a bare INDEX or FIRST-LAST "
    "continues the previous kind; a KIND alone is every device of that kind: each GPU, or one host worker per "
    "hardware thread), e.g. cpu:0-3, cuda:0,1, cpu:0,cpu:2";

/// Reads a device index: decimal digits only, below the kind's limit. `item` (the index, or the range
/// it is part of) is what an error names.
inline int parse_device_index(std::string_view digits, device_kind kind, std::string_view spec, std::string_view item) {
  const int limit = device_limit(kind);
  DP_CHECK(!digits.empty() && digits.find_first_not_of("0123456789") == std::string_view::npos, value_error,
           "dp: cannot read the device list '", spec, "': '", item, "' is not a device index",
           item == digits ? "" : " or FIRST-LAST range", "; expected ", device_grammar);
  long long v = 0;
  for (const char c : digits) {
    v = v * 10 + (c - '0');
    DP_CHECK(v < limit, value_error, "dp: cannot read the device list '", spec, "': index ", digits,
             " is out of range (", kind == device_kind::cuda ? "cuda" : "cpu", " indices are 0 to ", limit - 1, ")");
  }
  return static_cast<int>(v);
}
}  // namespace detail

/// Parses one device: "cpu" (the host, cpu:0), "cpu:3", "cuda" (cuda:0), "cuda:1".
inline device parse_device(std::string_view s) {
  for (const auto [name, kind] :
       {std::pair{std::string_view("cpu"), device_kind::cpu}, std::pair{std::string_view("cuda"), device_kind::cuda}}) {
    if (s == name) {
      return device{kind, 0};
    }
    if (s.starts_with(name) && s.size() > name.size() && s[name.size()] == ':') {
      const std::string_view index = s.substr(name.size() + 1);
      return device{kind, detail::parse_device_index(index, kind, s, index)};
    }
  }
  throw value_error(detail::concat("dp: cannot read a device from '", s, "' (expected cpu, cpu:N, cuda or cuda:N)"));
}

namespace detail {
/// Every device of a kind: each visible GPU, or one host worker per hardware thread.
inline std::vector<device> every_device(device_kind kind) {
  const int n = kind == device_kind::cuda ? std::min(cuda_device_count(), max_cuda_devices)
                                          : static_cast<int>(std::clamp(std::thread::hardware_concurrency(), 1u,
                                                                        static_cast<unsigned>(max_host_workers)));
  std::vector<device> out;
  for (int i = 0; i < n; ++i) {
    out.push_back(device{kind, i});
  }
  return out;
}
}  // namespace detail

/// Parses a device list (DP_DEVICES, --devices). Every number is an index, never a count:
/// "cpu:0-3" is host workers 0..3, "cpu:3" is worker 3 alone, "cuda:0,1" two GPUs, "cuda" every GPU,
/// "cpu" one host worker per hardware thread. A device named twice is an error.
inline std::vector<device> parse_devices(std::string_view spec) {
  DP_CHECK(!spec.empty(), value_error, "dp: empty device list; expected ", detail::device_grammar);
  std::vector<device> out;
  std::optional<device_kind> kind;
  for (std::size_t pos = 0; pos <= spec.size();) {
    const std::size_t comma = std::min(spec.find(',', pos), spec.size());
    const std::string_view item = spec.substr(pos, comma - pos);
    pos = comma + 1;
    std::string_view range = item;  // a bare range continues the previous kind
    if (item.empty() || !std::isdigit(static_cast<unsigned char>(item[0]))) {
      const auto colon = item.find(':');
      const std::string_view name = item.substr(0, colon);
      DP_CHECK(name == "cpu" || name == "cuda", value_error, "dp: cannot read the device list '", spec, "': '", name,
               "' is not a device kind; expected ", detail::device_grammar);
      kind = name == "cpu" ? device_kind::cpu : device_kind::cuda;
      if (colon == std::string_view::npos) {
        const auto all = detail::every_device(*kind);
        DP_CHECK(!all.empty(), device_error, "dp: the device list '", spec,
                 "' asks for every CUDA device, but none is visible");
        out.insert(out.end(), all.begin(), all.end());
        continue;
      }
      range = item.substr(colon + 1);
    }
    DP_CHECK(kind.has_value(), value_error, "dp: cannot read the device list '", spec, "': '", item,
             "' has no device kind; expected ", detail::device_grammar);
    const auto dash = range.find('-');
    const int first = detail::parse_device_index(range.substr(0, dash), *kind, spec, range);
    const int last =
        dash == std::string_view::npos ? first : detail::parse_device_index(range.substr(dash + 1), *kind, spec, range);
    DP_CHECK(first <= last, value_error, "dp: cannot read the device list '", spec, "': the range ", range,
             " is empty (FIRST must not exceed LAST); expected ", detail::device_grammar);
    for (int i = first; i <= last; ++i) {
      out.push_back(device{*kind, i});
    }
  }
  for (std::size_t i = 0; i < out.size(); ++i) {
    for (std::size_t j = 0; j < i; ++j) {
      DP_CHECK(out[i] != out[j], value_error, "dp: the device list '", spec, "' names ", out[i],
               " twice; each replica needs its own device");
    }
  }
  return out;
}

/// Every visible CUDA device; else one host worker per hardware thread. DP_DEVICES overrides, in
/// parse_devices' grammar ("cpu:0-6" for workers 0..6, "cuda:0,1").
inline std::vector<device> devices() {
  if (const char* env = std::getenv("DP_DEVICES"); env && *env) {
    return parse_devices(env);
  }
  auto out = detail::every_device(device_kind::cuda);
  return out.empty() ? detail::every_device(device_kind::cpu) : out;
}

}  // namespace dp::inline DP_ABI
