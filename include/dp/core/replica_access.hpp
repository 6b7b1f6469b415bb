// The one door to every replica of a parameter owner (trainer, dp::parallel): each replica's flat
// parameters and gradients, each replica's model. Optimizers and checkpoint loading go through it;
// dp::parallel keeps these members private, so user code has no API that reaches a replica and
// replicas cannot drift apart. It sits in core, below every layer that uses it: nn, io, optim, dist.
#pragma once

#include <cstdint>
#include <utility>

#include <dp/config.hpp>

namespace dp::inline DP_ABI::detail {

struct replica_access {
  /// Whether O lets f(i, parameters, gradients) visit its replicas (checked with this class's access).
  template <class O, class F>
  static constexpr bool visitable = requires(O& o, F f) { o.for_each_replica(f); };

  template <class O, class F>
  static void for_each_replica(O& o, F&& f) {
    o.for_each_replica(std::forward<F>(f));
  }
  template <class O, class F>
  static void update_model(O& o, F&& f) {
    o.update_model(std::forward<F>(f));
  }
  template <class O>
  static void restore_steps(O& o, std::uint64_t steps) {
    o.restore_steps(steps);
  }
  template <class O, class S>
  static void set_gradients(O& o, S state) {
    o.set_gradients(state);
  }

  // A trainer's own state, for dp::parallel (which holds one trainer per replica) and tests.
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
  static void retire(Trainer& t) noexcept {
    t.retire();
  }
};

}  // namespace dp::inline DP_ABI::detail
