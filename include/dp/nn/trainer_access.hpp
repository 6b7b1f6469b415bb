// The door to a trainer's own state for dp::parallel, which holds one trainer per replica (and for
// tests): its flat parameters and gradients, its model, a step's gradients without an update, and
// undoing or forgetting a step. The trainer keeps these private; the owner-level door that
// optimizers and checkpoints use is core/replica_access.hpp.
#pragma once

#include <dp/config.hpp>

namespace dp::inline DP_ABI::detail {

struct trainer_access {
  template <class Trainer>
  static const auto& flat_params(const Trainer& t) noexcept {
    return t.flat_params();
  }
  template <class Trainer>
  static const auto& flat_grads(const Trainer& t) noexcept {
    return t.flat_grads();
  }
  template <class Trainer>
  static auto& mutable_model(Trainer& t) noexcept {
    return t.mutable_model();
  }
  template <class Trainer, class... Args>
  static double step_grads(Trainer& t, const Args&... args) {
    return t.step_grads(args...);
  }
  template <class Trainer>
  static void undo_step(Trainer& t) {
    t.undo_step();
  }
  template <class Trainer>
  static void forget_step(Trainer& t) noexcept {
    t.forget_step();
  }
  template <class Trainer>
  static void arm_undo(Trainer& t) {
    t.arm_undo();
  }
  template <class Trainer>
  static auto settings(const Trainer& t) {
    return t.settings();
  }
  template <class Trainer, class Words>
  static void adopt_settings(Trainer& t, const Words& words) {
    t.adopt_settings(words);
  }
  template <class Trainer>
  static void make_replica(Trainer& t) noexcept {
    t.make_replica();
  }
  template <class Trainer>
  static void retire(Trainer& t) noexcept {
    t.retire();
  }
};

}  // namespace dp::inline DP_ABI::detail
