// Learning-rate schedules: a multiplier of the base learning rate as a function of the optimizer
// step (0 for the first step). Step decay, cosine and linear decay, each with an optional linear
// warm-up, after which the schedule starts from its own step 0.
#pragma once

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <dp/config.hpp>
#include <dp/core/error.hpp>

namespace dp::inline DP_ABI::optim {

struct lr_schedule {
  enum class kind : std::uint8_t { constant, step, cosine, linear };
  kind type = kind::constant;
  std::int64_t step_size = 1;  // step: multiply by gamma every step_size steps
  double gamma = 0.1;
  std::int64_t total_steps = 0;  // cosine / linear: steps until the final factor
  double final_factor = 0.0;
  std::int64_t warmup_steps = 0;  // linear warm-up from warmup_start to 1, then the schedule
  double warmup_start = 0.0;

  /// The factor at optimizer step t (on the host, or on the device where the step advances). The
  /// first warmup_steps steps rise linearly from warmup_start towards 1 (PyTorch's LinearLR); the
  /// schedule then runs from its own step 0, so step warmup_steps has the full rate (SequentialLR,
  /// and Hugging Face's schedules with warm-up, whose decay takes the steps after the warm-up).
  DP_HOST_DEVICE double factor(std::int64_t t) const {
    if (t < warmup_steps) {
      return warmup_start + (1.0 - warmup_start) * static_cast<double>(t) / static_cast<double>(warmup_steps);
    }
    t -= warmup_steps;
    double f = 1.0;
    switch (type) {
      case kind::constant:
        break;
      case kind::step:
        f = ::pow(gamma, static_cast<double>(t / (step_size > 1 ? step_size : 1)));
        break;
      case kind::cosine: {
        const double x = progress(t);
        f = final_factor + (1.0 - final_factor) * 0.5 * (1.0 + ::cos(3.141592653589793 * x));
        break;
      }
      case kind::linear: {
        const double x = progress(t);
        f = 1.0 + (final_factor - 1.0) * x;
        break;
      }
    }
    return f;
  }

 private:
  /// How far t is through total_steps, in [0, 1].
  DP_HOST_DEVICE double progress(std::int64_t t) const {
    const double x = static_cast<double>(t) / static_cast<double>(total_steps > 1 ? total_steps : 1);
    return x < 1.0 ? x : 1.0;
  }
};

namespace detail {
/// An optimizer's options as a checkpoint stores and compares them: (name, value as text), numbers
/// in their shortest exact form, so that equal texts are equal values.
class option_list {
 public:
  option_list& add(std::string name, double v) {
    char buf[32];
    const auto end = std::to_chars(buf, buf + sizeof buf, v == 0 ? 0.0 : v).ptr;  // -0 reads as 0
    items_.emplace_back(std::move(name), std::string(buf, end));
    return *this;
  }
  option_list& add(std::string name, std::int64_t v) {
    items_.emplace_back(std::move(name), std::to_string(v));
    return *this;
  }
  option_list& add(std::string name, bool v) {
    items_.emplace_back(std::move(name), v ? "true" : "false");
    return *this;
  }
  /// The schedule's kind and the fields it reads (those it ignores would refuse a resume for nothing).
  option_list& add(const lr_schedule& s) {
    using k = lr_schedule::kind;
    const auto kind = static_cast<unsigned>(s.type);
    const char* const kinds[] = {"constant", "step", "cosine", "linear"};
    items_.emplace_back("schedule", kind < 4 ? kinds[kind] : std::to_string(kind));
    if (s.type == k::step) {
      add("schedule.step_size", s.step_size).add("schedule.gamma", s.gamma);
    } else if (s.type == k::cosine || s.type == k::linear) {
      add("schedule.total_steps", s.total_steps).add("schedule.final_factor", s.final_factor);
    }
    if (s.warmup_steps > 0) {
      add("schedule.warmup_steps", s.warmup_steps).add("schedule.warmup_start", s.warmup_start);
    }
    return *this;
  }
  std::vector<std::pair<std::string, std::string>> items() const { return items_; }

 private:
  std::vector<std::pair<std::string, std::string>> items_;
};

/// A schedule's step count (step_size, total_steps) is a whole number of optimizer steps, at least `least`.
inline void check_schedule_steps(const char* who, const char* name, std::int64_t value, std::int64_t least) {
  DP_CHECK(value >= least, value_error, "dp: ", who, ": ", name, " is ", value, "; expected a step count >= ", least);
}
/// A multiplier of the learning rate (gamma, final_factor) is finite and >= 0: a negative or NaN one
/// would make the learning rate negative or NaN.
inline void check_schedule_factor(const char* who, const char* name, double value) {
  DP_CHECK(std::isfinite(value) && value >= 0, value_error, "dp: ", who, ": ", name, " is ", value,
           "; expected a finite factor >= 0");
}
/// The warm-up starts at a fraction of the base rate, in [0, 1]: PyTorch's LinearLR
/// start_factor, except that 0 (the default) is allowed, the warm-up from zero of Hugging Face's
/// linear schedules, whose first step has rate 0 (Adam's moments still take its gradient).
inline void check_warmup(const char* who, const char* steps_name, std::int64_t steps, const char* start_name,
                         double start) {
  check_schedule_steps(who, steps_name, steps, 0);
  DP_CHECK(start >= 0 && start <= 1, value_error, "dp: ", who, ": ", start_name, " is ", start,
           "; expected a fraction of the base rate in [0, 1]");
}
/// What the factories check, for a schedule an optimizer is given (one may be written field by field).
inline void check_schedule(const lr_schedule& s, const char* who) {
  switch (s.type) {
    case lr_schedule::kind::constant:
      break;
    case lr_schedule::kind::step:
      check_schedule_steps(who, "schedule.step_size", s.step_size, 1);
      check_schedule_factor(who, "schedule.gamma", s.gamma);
      break;
    case lr_schedule::kind::cosine:
    case lr_schedule::kind::linear:
      check_schedule_steps(who, "schedule.total_steps", s.total_steps, 1);
      check_schedule_factor(who, "schedule.final_factor", s.final_factor);
      break;
  }
  check_warmup(who, "schedule.warmup_steps", s.warmup_steps, "schedule.warmup_start", s.warmup_start);
}
}  // namespace detail

/// The learning rate stays at its base value.
inline lr_schedule constant_lr() { return {}; }
/// Multiplies the learning rate by gamma every step_size optimizer steps (PyTorch's StepLR, in steps).
/// Requires step_size >= 1 and gamma finite and >= 0.
inline lr_schedule step_lr(std::int64_t step_size, double gamma = 0.1) {
  detail::check_schedule_steps("step_lr", "step_size", step_size, 1);
  detail::check_schedule_factor("step_lr", "gamma", gamma);
  lr_schedule s;
  s.type = lr_schedule::kind::step;
  s.step_size = step_size;
  s.gamma = gamma;
  return s;
}
/// Cosine from the base rate down to final_factor x base over total_steps (CosineAnnealingLR, with
/// eta_min = final_factor x base), then final_factor x base: past total_steps, PyTorch's cosine
/// rises again (a period of 2 x total_steps); dp's stays at the end of a schedule that ran too long.
/// Requires total_steps >= 1 and final_factor finite and >= 0.
inline lr_schedule cosine_lr(std::int64_t total_steps, double final_factor = 0.0) {
  detail::check_schedule_steps("cosine_lr", "total_steps", total_steps, 1);
  detail::check_schedule_factor("cosine_lr", "final_factor", final_factor);
  lr_schedule s;
  s.type = lr_schedule::kind::cosine;
  s.total_steps = total_steps;
  s.final_factor = final_factor;
  return s;
}
/// Linear from the base rate to final_factor x base over total_steps.
/// Requires total_steps >= 1 and final_factor finite and >= 0.
inline lr_schedule linear_lr(std::int64_t total_steps, double final_factor = 0.0) {
  detail::check_schedule_steps("linear_lr", "total_steps", total_steps, 1);
  detail::check_schedule_factor("linear_lr", "final_factor", final_factor);
  lr_schedule s;
  s.type = lr_schedule::kind::linear;
  s.total_steps = total_steps;
  s.final_factor = final_factor;
  return s;
}
/// Puts a linear warm-up from start x the base rate over `steps` steps before the schedule, which then
/// starts from its own step 0: with_warmup(cosine_lr(900), 100) warms up over 100 steps and decays
/// over the next 900 (Hugging Face's get_cosine_schedule_with_warmup(100, 1000)).
/// Requires steps >= 0 (0: no warm-up) and start in [0, 1].
inline lr_schedule with_warmup(lr_schedule s, std::int64_t steps, double start = 0.0) {
  detail::check_warmup("with_warmup", "steps", steps, "start", start);
  s.warmup_steps = steps;
  s.warmup_start = start;
  return s;
}

}  // namespace dp::inline DP_ABI::optim
