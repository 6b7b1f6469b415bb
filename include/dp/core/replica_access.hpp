// The one door to every replica of a parameter owner (trainer, dp::parallel): each replica's flat
// parameters and gradients, each replica's model, its step count. Optimizers and checkpoint loading
// go through it; owners keep these members private, so user code has no API that reaches a replica
// and replicas cannot drift apart. It sits in core, below every layer that uses it (nn, io, optim,
// dist); a trainer's own internals, which only dp::parallel uses, are nn/trainer_access.hpp.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
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
  /// Applies f(const model&) to every replica's model, in update_model's order.
  template <class O, class F>
  static void visit_models(const O& o, F&& f) {
    o.visit_models(std::forward<F>(f));
  }
  /// Across processes (dp::parallel over MPI) every rank says whether its part of `what` failed
  /// before anything was written, and one that did not throws if another did: all ranks write or
  /// none does. (Every owner has it, so that one that lost it cannot skip the agreement silently.)
  /// `file`, a fingerprint of what a rank read, must then be the same on every rank.
  template <class O>
  static void agree_before_update(O& o, const char* what, bool failed, std::optional<std::uint64_t> file = {}) {
    o.agree_before_update(what, failed, file);
  }
  /// Where an optimizer is made: across processes every rank's must have the same `options` (lines
  /// of text), or their replicas would drift apart; a difference throws on every rank, naming it.
  template <class O>
  static void agree_options(O& o, const char* optimizer, const std::string& options) {
    o.agree_options(optimizer, options);
  }
  template <class O>
  static void restore_steps(O& o, std::uint64_t steps) {
    o.restore_steps(steps);
  }
  template <class O, class S>
  static void set_gradients(O& o, S state) {
    o.set_gradients(state);
  }
  /// Every replica as it was before the step that began last (buffers, step count), gradients
  /// dropped: a step refused after its backward (clip_grad_norm of a non-finite norm).
  template <class O>
  static void undo_step(O& o) {
    o.undo_step();
  }
};

}  // namespace dp::inline DP_ABI::detail
