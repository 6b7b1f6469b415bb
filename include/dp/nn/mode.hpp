// Training or evaluation mode. Forward functions are const and the mode is not model state: it is
// set by whoever runs the model (a trainer or dp::parallel for its steps, or a scope), so replicas
// can never disagree about it.
#pragma once

#include <cstdint>

#include <dp/config.hpp>

namespace dp::inline DP_ABI::nn {

namespace detail {
inline bool& training_flag() {
  thread_local bool training = false;  // outside a trainer: inference
  return training;
}

/// Where an eager (untraced) forward's random draws come from on this thread: the step that the next
/// dropout call takes (each call advances it), and the batch row its input's row 0 is. dp::parallel
/// sets both for every replica of a training-mode par(x), so dropout masks follow the global row and
/// do not depend on the device count, as in traced steps.
struct eager_random {
  std::uint64_t step = 0;
  index_t sample_offset = 0;
};
inline eager_random& eager_random_state() {
  thread_local eager_random state;
  return state;
}

/// This thread draws from `step` with row 0 at batch row `offset` for the scope; the row is
/// restored after, the step is left where the draws took it.
class eager_random_scope {
 public:
  eager_random_scope(std::uint64_t step, index_t offset) : prev_(eager_random_state().sample_offset) {
    eager_random_state() = {step, offset};
  }
  ~eager_random_scope() { eager_random_state().sample_offset = prev_; }
  eager_random_scope(const eager_random_scope&) = delete;
  eager_random_scope& operator=(const eager_random_scope&) = delete;

 private:
  index_t prev_;
};

/// Whether the forward running on this thread is an evaluation-mode call of a dp::parallel replica:
/// no buffer synchronisation follows it, so there nn::update is refused.
inline bool& replica_eval_flag() {
  thread_local bool replica_eval = false;
  return replica_eval;
}

/// Sets replica_eval_flag for the scope's lifetime.
class replica_eval_scope {
 public:
  explicit replica_eval_scope(bool on) : prev_(replica_eval_flag()) { replica_eval_flag() = on; }
  ~replica_eval_scope() { replica_eval_flag() = prev_; }
  replica_eval_scope(const replica_eval_scope&) = delete;
  replica_eval_scope& operator=(const replica_eval_scope&) = delete;

 private:
  bool prev_;
};
}  // namespace detail

/// True while a training step (or a train_scope) runs on this thread.
inline bool training() { return detail::training_flag(); }

/// Runs the enclosed calls in training (true) or evaluation (false) mode.
class mode_scope {
 public:
  explicit mode_scope(bool training) : prev_(detail::training_flag()) { detail::training_flag() = training; }
  ~mode_scope() { detail::training_flag() = prev_; }
  mode_scope(const mode_scope&) = delete;
  mode_scope& operator=(const mode_scope&) = delete;

 private:
  bool prev_;
};

}  // namespace dp::inline DP_ABI::nn
