// The write guard: storage that the code running on this thread must not write through a tensor.
// nn::trainer locks its parameters and buffers while a model's forward runs: a forward that writes
// them through a copied handle would do so once per trace (not per step) and outside the buffers'
// synchronisation, so such a write is an error at once; nn::update is the one way to change a
// buffer from forward.
#pragma once

#include <algorithm>
#include <span>

#include <dp/config.hpp>
#include <dp/core/error.hpp>
#include <dp/core/memory.hpp>

namespace dp::inline DP_ABI::detail {

inline std::span<const storage* const>& locked_storage() {
  thread_local std::span<const storage* const> locked;
  return locked;
}

/// Locks `s` for writes on this thread for the guard's lifetime (guards nest: the innermost wins).
class write_guard {
 public:
  explicit write_guard(std::span<const storage* const> s) noexcept : prev_(locked_storage()) { locked_storage() = s; }
  ~write_guard() { locked_storage() = prev_; }
  write_guard(const write_guard&) = delete;
  write_guard& operator=(const write_guard&) = delete;

 private:
  std::span<const storage* const> prev_;
};

/// Throws when `s` is locked on this thread (called by every public write: =, +=, assign, fill).
inline void check_writable(const storage* s) {
  const auto locked = locked_storage();
  DP_CHECK(locked.empty() || std::find(locked.begin(), locked.end(), s) == locked.end(), value_error,
           "dp: the model's forward wrote into one of its parameters or buffers through a tensor handle; such a "
           "write would happen once per trace, not once per step, and would not be synchronised across replicas. "
           "Change a buffer with nn::update(buffer, new_value) (replayed on every call, synchronised by the "
           "buffer's policy); parameters change only through an optimizer");
}

}  // namespace dp::inline DP_ABI::detail
