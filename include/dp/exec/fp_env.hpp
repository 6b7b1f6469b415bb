// The host's floating-point environment in dp's loops: subnormal floats flushed to zero by default.
// On Intel cores every arithmetic operation that reads or writes a subnormal (below 1.2e-38 in
// float) takes a microcode assist of about a hundred cycles; training makes them as momentum
// buffers and gradients of idle units decay (the digits job on an Emerald Rapids Xeon: 30% of its
// time). dp's host loops and GEMMs therefore run with x86's FTZ and DAZ bits set, as TensorFlow's
// CPU kernels do; DP_FLUSH_DENORMALS=0 or dp::set_flush_denormals(false) keeps subnormals (PyTorch's
// default). The bits are set for the loop's duration only: the caller's own environment is restored.
#pragma once

#include <atomic>
#include <cstdlib>
#include <string_view>

#include <dp/config.hpp>
#include <dp/core/error.hpp>

#if DP_HAS_MXCSR
#include <immintrin.h>
#endif

namespace dp::inline DP_ABI {
namespace detail {

/// DP_FLUSH_DENORMALS as a setting: unset or empty is the default (on); "1" and "0" choose;
/// anything else is an error naming the variable.
inline bool env_flush_denormals(const char* value) {
  if (value == nullptr || *value == '\0') {
    return true;
  }
  const std::string_view v = value;
  DP_CHECK(v == "0" || v == "1", value_error, "dp: the environment variable DP_FLUSH_DENORMALS must be 1 (flush ",
           "subnormal floats to zero in dp's host loops, the default) or 0 (keep them), got '", v, "'");
  return v == "1";
}

/// The setting, read from the environment on first use (a bad value is the error of that use).
inline std::atomic<bool>& flush_denormals_setting() {
  static std::atomic<bool> on{env_flush_denormals(std::getenv("DP_FLUSH_DENORMALS"))};
  return on;
}

/// MXCSR's control bits (rounding, exception masks, flush-to-zero, denormals-are-zero); the six
/// below them are sticky exception flags, which dp's loops leave to the thread that raised them.
inline constexpr unsigned fp_control_mask = 0xffc0u;

/// The calling thread's floating-point control bits (MXCSR on x86-64; 0 elsewhere).
inline unsigned read_fp_control() noexcept {
#if DP_HAS_MXCSR
  return _mm_getcsr() & fp_control_mask;
#else
  return 0;
#endif
}
/// Sets the calling thread's control bits to `c`, keeping its exception flags.
inline void write_fp_control([[maybe_unused]] unsigned c) noexcept {
#if DP_HAS_MXCSR
  _mm_setcsr((_mm_getcsr() & ~fp_control_mask) | (c & fp_control_mask));
#endif
}

/// Gives the calling thread the control bits `c` (a worker taking parts of another thread's loop
/// runs them in that thread's environment: flushing and rounding alike).
inline void adopt_fp_control(unsigned c) noexcept {
  if (read_fp_control() != c) {
    write_fp_control(c);
  }
}

/// MXCSR's flush-to-zero (results) and denormals-are-zero (inputs) bits.
inline constexpr unsigned flush_bits = DP_HAS_MXCSR ? 0x8040u : 0u;

/// For its lifetime, the calling thread flushes subnormals when dp's setting says so (a thread that
/// already flushes keeps doing so); the thread's own control bits come back at the end, and the
/// exception flags its loop raised stay raised.
class host_fp_scope {
 public:
  host_fp_scope() : saved_(read_fp_control()) {
    if (flush_denormals_setting().load(std::memory_order_relaxed) && (saved_ & flush_bits) != flush_bits) {
      write_fp_control(saved_ | flush_bits);
      changed_ = true;
    }
  }
  ~host_fp_scope() {
    if (changed_) {
      write_fp_control(saved_);
    }
  }
  host_fp_scope(const host_fp_scope&) = delete;
  host_fp_scope& operator=(const host_fp_scope&) = delete;

 private:
  unsigned saved_;
  bool changed_ = false;
};

}  // namespace detail

/// Whether dp's host loops and GEMMs flush subnormal floats to zero (x86-64; on by default, or as
/// DP_FLUSH_DENORMALS says).
inline bool flush_denormals() {
  return detail::flush_bits != 0 && detail::flush_denormals_setting().load(std::memory_order_relaxed);
}
/// Chooses for every thread: true flushes subnormals to zero (fast on every x86 core), false keeps
/// them (IEEE gradual underflow, slow on Intel cores). GPU kernels keep subnormals either way.
inline void set_flush_denormals(bool on) { detail::flush_denormals_setting().store(on); }

}  // namespace dp::inline DP_ABI
