// The write guard: while a model's forward runs (traced or not), nn::trainer forbids writes into any
// tensor that existed before forward began: its parameters and buffers, and state kept elsewhere
// (a static member). Such a write through a copied handle would happen once per trace (not per
// step) and outside the buffers' synchronisation, so it is an error at once; nn::update is the one
// way to change a buffer from forward. Tensors forward makes itself may be written freely.
//
// Outside forward, a trainer's parameters and buffers (storages marked `trained_by` it) are written
// only by their owner: its optimizer, a checkpoint load, buffer synchronisation, and `edit`, which
// opens an owner_write_scope for that trainer alone. par.model() hands out views of replica 0's
// memory; a write through one would change that replica alone and the replicas would drift apart, so
// it is refused.
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
  const void* owner = nullptr;  // the open owner_write_scope's trainer (any_owner: dp's own writes)
};

/// The scope of dp's own writes into its replicas (loads, buffer synchronisation, undoing a step).
inline const void* any_owner() noexcept {
  static const char tag = 0;
  return &tag;
}

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

/// Lets the code on this thread write trained storages for the scope's lifetime: those of `owner`
/// (a trainer's edit hands f its own model, not another's), or any (dp writing its replicas'
/// parameters and buffers). Never open while forward runs; scopes nest, the innermost wins.
class owner_write_scope {
 public:
  explicit owner_write_scope(const void* owner = any_owner()) noexcept : prev_(current_write_lock().owner) {
    current_write_lock().owner = owner;
  }
  ~owner_write_scope() { current_write_lock().owner = prev_; }
  owner_write_scope(const owner_write_scope&) = delete;
  owner_write_scope& operator=(const owner_write_scope&) = delete;

 private:
  const void* prev_;
};

/// Marks a trainer's parameter or buffer storage as `owner`'s (nullptr, when the trainer goes: free).
inline void mark_trained(const storage_ref& s, const void* owner) noexcept { s->trained_by = owner; }

/// Throws when `s` belongs to a model that a trainer or dp::parallel owns and no owner_write_scope
/// is open on this thread.
inline void check_owner(const storage* s, const write_lock& lock = current_write_lock()) {
  if (s->trained_by == nullptr || lock.owner == s->trained_by || lock.owner == any_owner()) [[likely]] {
    return;
  }
  DP_CHECK(lock.owner == nullptr, value_error,
           "dp: edit(f) wrote into a parameter or buffer of another model (one that a different nn::trainer or "
           "dp::parallel owns, through a handle kept from it): f may change only the model it is given; change the "
           "other one through its own owner.edit");
  raise<value_error>(
      "dp: a write into a parameter or buffer of a model that an nn::trainer or dp::parallel owns: model() "
      "hands out read-only views (in dp::parallel, of replica 0's memory: the write would change that replica "
      "alone and the replicas would drift apart). Parameters change through the optimizer; "
      "dp::io::load(path, owner) loads them; owner.edit([](Model& m) { ... }) changes the model and copies it "
      "to every replica and rank");
}

/// Whether nn::update may write `s` from the forward running on this thread: a storage of the model
/// being trained (or one made inside forward); not state kept elsewhere (a static member, another
/// model's buffer), whose updates no synchronisation or undo covers.
inline bool updatable_in_forward(const storage* s, const write_lock& lock = current_write_lock()) {
  return lock.since == 0 || s->born >= lock.since ||
         std::find(lock.storages.begin(), lock.storages.end(), s) != lock.storages.end();
}

/// Throws when `s` is locked on this thread (called by every public write: =, +=, assign, fill).
inline void check_writable(const storage* s) {
  const write_lock& lock = current_write_lock();
  if (lock.since != 0) [[unlikely]] {
    const bool locked =
        s->born < lock.since || std::find(lock.storages.begin(), lock.storages.end(), s) != lock.storages.end();
    DP_CHECK(!locked, value_error,
             "dp: the model's forward wrote into a tensor that existed before it started (one of its parameters or "
             "buffers, or a tensor kept elsewhere such as a static member); such a write would happen once per "
             "trace, not once per step, and would not be synchronised across replicas. Change a buffer with "
             "nn::update(buffer, new_value) (replayed on every call, synchronised by the buffer's policy); "
             "parameters change only through an optimizer; state outside the model does not belong in forward");
  }
  check_owner(s, lock);
}

}  // namespace dp::inline DP_ABI::detail
