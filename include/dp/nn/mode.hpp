// Training or evaluation mode. Forward functions are const and the mode is not model state: it is
// set by whoever runs the model (a trainer or dp::parallel for its steps, or a scope), so replicas
// can never disagree about it.
#pragma once

#include <dp/config.hpp>

namespace dp::inline DP_ABI::nn {

namespace detail {
inline bool& training_flag() {
  thread_local bool training = false;  // outside a trainer: inference
  return training;
}
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
