// The write guard: while a model's forward runs (traced or not), nn::trainer forbids writes into any
// tensor that existed before forward began: its parameters and buffers, and state kept elsewhere
// (a static member). Such a write through a copied handle would happen once per trace (not per
// step) and outside the buffers' synchronisation, so it is an error at once; nn::update is the one
// way to change a buffer from forward. Tensors forward makes itself may be written freely.
#pragma once

#include <algorithm>
#include <cstdint>
#include <span>

#include <dp/config.hpp>
#include <dp/core/error.hpp>
#include <dp/core/memory.hpp>

namespace dp::inline DP_ABI::detail {

/// What the code running on this thread must not write: storage older than `since` (every tensor
/// that existed before a model's forward began: its parameters and buffers, and anything kept
/// elsewhere, a static member included), and the storages listed (the model's, in case a block
/// was recycled). Inactive when `since` is 0.
struct write_lock {
  std::uint64_t since = 0;
  std::span<const storage* const> storages;
};

inline write_lock& current_write_lock() {
  thread_local write_lock lock;
  return lock;
}

/// Locks writes on this thread for the guard's lifetime (guards nest: the innermost wins).
class write_guard {
 public:
  explicit write_guard(std::span<const storage* const> model) noexcept : prev_(current_write_lock()) {
    current_write_lock() = {birth_clock().load(std::memory_order_relaxed), model};
  }
  ~write_guard() { current_write_lock() = prev_; }
  write_guard(const write_guard&) = delete;
  write_guard& operator=(const write_guard&) = delete;

 private:
  write_lock prev_;
};

/// Throws when `s` is locked on this thread (called by every public write: =, +=, assign, fill).
inline void check_writable(const storage* s) {
  const write_lock& lock = current_write_lock();
  if (lock.since == 0) [[likely]] {
    return;
  }
  const bool locked =
      s->born < lock.since || std::find(lock.storages.begin(), lock.storages.end(), s) != lock.storages.end();
  DP_CHECK(!locked, value_error,
           "dp: the model's forward wrote into a tensor that existed before it started (one of its parameters or "
           "buffers, or a tensor kept elsewhere such as a static member); such a write would happen once per "
           "trace, not once per step, and would not be synchronised across replicas. Change a buffer with "
           "nn::update(buffer, new_value) (replayed on every call, synchronised by the buffer's policy); "
           "parameters change only through an optimizer; state outside the model does not belong in forward");
}

}  // namespace dp::inline DP_ABI::detail
