// Adam and AdamW with PyTorch's formulas (bias-corrected moments; Adam adds weight decay to the
// gradient, AdamW decays the weights directly). One fused pass over all parameters.
#pragma once

#include <cmath>
#include <cstdint>
#include <functional>
#include <optional>
#include <string_view>

#include <dp/exec/for_each.hpp>
#include <dp/expr/math.hpp>
#include <dp/optim/optimizer.hpp>
#include <dp/optim/step_state.hpp>

namespace dp::inline DP_ABI::optim {

/// lr and weight_decay are finite and >= 0, eps finite and > 0, beta1 and beta2 in [0, 1); the
/// constructor refuses anything else.
struct adam_options {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  /// Unset: PyTorch's default for the optimizer (adam 0, adamw 0.01), also when only lr is given.
  std::optional<double> weight_decay;
  lr_schedule schedule = {};
};

namespace detail {
/// The step's scalars, from the steps before it: [1] the learning rate, [2] lr / (1 - beta1^t),
/// [3] sqrt(1 - beta2^t) (PyTorch's bias corrections, t counting this step).
struct adam_advance {
  double lr, beta1, beta2;
  lr_schedule schedule;
  DP_HOST_DEVICE void operator()(double* s) const {
    const double t = s[0] + 1;
    const double rate = lr * schedule.factor(static_cast<std::int64_t>(s[0]));
    s[1] = rate;
    s[2] = rate / (1 - ::pow(beta1, t));
    s[3] = ::sqrt(1 - ::pow(beta2, t));
  }
};

template <class T>
struct adam_update {
  T* p;
  const T* g;
  T* m;
  T* v;
  const double* scalars;  // adam_advance's, on the device
  // 1 - beta taken in double, as PyTorch does: beta2 = 1 - 1e-9 is 1 in float, and 1 - T(beta2)
  // then kept v at 0 (a step of lr * g / eps).
  T beta1, beta2, one_minus_beta1, one_minus_beta2, eps, weight_decay;
  bool decoupled;
  DP_HOST_DEVICE DP_FORCEINLINE void operator()(index_t i) const {
    const T lr = static_cast<T>(scalars[1]), step_size = static_cast<T>(scalars[2]),
            bc2_sqrt = static_cast<T>(scalars[3]);
    T pi = p[i];
    T gi = g[i];
    if (decoupled) {
      pi = pi * (T(1) - lr * weight_decay);
    } else {
      gi = gi + weight_decay * pi;
    }
    const T mi = beta1 * m[i] + one_minus_beta1 * gi;
    const T vi = beta2 * v[i] + one_minus_beta2 * gi * gi;
    m[i] = mi;
    v[i] = vi;
    const T denom = dp::detail::math::sqrt(vi) / bc2_sqrt + eps;
    p[i] = pi - step_size * mi / denom;
  }
};

template <class Owner, bool Decoupled>
class adam_impl {
  static_assert(check_owner<Owner>());

 public:
  using T = typename owner_value<Owner>::type;

  adam_impl(Owner& owner, adam_options o)
      : owner_(&owner),
        o_(agreed_options(owner, kind(), o, checked, describe)),
        m_(state_like(owner)),
        v_(state_like(owner)),
        steps_(replica_devices(owner)) {}

  void step() {
    require_gradients(*owner_, Decoupled ? "adamw" : "adam");
    dp::detail::replica_access::for_each_replica(*owner_, [&](std::size_t r, const tensor<T>& params,
                                                              const tensor<T>& grads) {
      steps_.advance(r, adam_advance{o_.lr, o_.beta1, o_.beta2, o_.schedule});
      dp::detail::for_each_index(params.device(), params.numel(),
                                 adam_update<T>{params.data(), grads.data(), m_[r].data(), v_[r].data(),
                                                steps_.scalars(r), static_cast<T>(o_.beta1), static_cast<T>(o_.beta2),
                                                static_cast<T>(1 - o_.beta1), static_cast<T>(1 - o_.beta2),
                                                static_cast<T>(o_.eps), static_cast<T>(weight_decay(o_)), Decoupled});
    });
    dp::detail::replica_access::set_gradients(*owner_, nn::grad_state::none);
  }

  /// The learning rate of the next step. Reads the step count from the device.
  double current_lr() const { return o_.lr * o_.schedule.factor(steps()); }
  /// Steps taken, replays of a captured step included (read from the device).
  std::int64_t steps() const { return steps_.steps(); }
  const adam_options& options() const noexcept { return o_; }
  /// The options as (name, value) texts, weight decay as applied: a checkpoint stores them, and a
  /// resume made with other options is refused unless asked for.
  std::vector<std::pair<std::string, std::string>> option_values() const { return describe(o_); }
  /// The optimizer's name, stored in checkpoints: Adam's moments mean something else to AdamW (its
  /// weight decay differs), so one does not load the other's.
  static constexpr std::string_view kind() noexcept { return Decoupled ? "adamw" : "adam"; }
  /// The trainer or dp::parallel this optimizer trains (a checkpoint checks it is the one given).
  const Owner& owner() const noexcept { return *owner_; }

  /// Named state: "<parameter>.exp_avg" and "<parameter>.exp_avg_sq" (PyTorch's keys).
  std::vector<named_state<T>> state() const {
    std::vector<named_state<T>> out;
    for (const auto& e : owner_->layout()) {
      out.push_back({e.name + ".exp_avg", e.view(m_[0]).clone()});
      out.push_back({e.name + ".exp_avg_sq", e.view(v_[0]).clone()});
    }
    return out;
  }
  /// Restores the step count and state: every name state() gives, once, with its parameter's shape.
  /// `before_write` runs after every check and copy, before the first write.
  void load_state(std::int64_t steps, const std::vector<named_state<T>>& s,
                  const std::function<void()>& before_write = {}) {
    detail::load_named_state<T>(Decoupled ? "adamw" : "adam", owner_->layout(), steps, s,
                                {{".exp_avg", &m_}, {".exp_avg_sq", &v_, true}}, before_write);
    steps_.set_steps(steps);
  }

 private:
  /// The options, refused before any state is allocated unless each is in its range.
  static const adam_options& checked(const adam_options& o) {
    const char* who = Decoupled ? "adamw" : "adam";
    check_non_negative_option<T>(who, "lr", o.lr);
    DP_CHECK(o.beta1 >= 0 && o.beta1 < 1, value_error, "dp: ", who, ": beta1 is ", o.beta1,
             "; expected a value in [0, 1)");
    DP_CHECK(o.beta2 >= 0 && o.beta2 < 1, value_error, "dp: ", who, ": beta2 is ", o.beta2,
             "; expected a value in [0, 1)");
    // eps 0 (or one that rounds to 0 in T) divides 0 by 0 for a parameter whose gradients have all
    // been 0 so far (a dead unit, an unseen embedding row): NaN in the weights, silently.
    // A subnormal one reads as 0 too: host loops flush subnormals (exec/fp_env.hpp).
    DP_CHECK(std::isfinite(o.eps) && o.eps <= static_cast<double>(std::numeric_limits<T>::max()) &&
                 static_cast<T>(o.eps) >= std::numeric_limits<T>::min(),
             value_error, "dp: ", who, ": eps is ", o.eps,
             "; expected a finite value > 0 that the parameters' type holds as a normal number (with 0, a "
             "parameter whose gradients are all 0 would get 0 / 0)");
    if (o.weight_decay) {
      check_non_negative_option<T>(who, "weight_decay", *o.weight_decay);
    }
    check_schedule(o.schedule, who);
    return o;
  }

  /// The weight decay applied: PyTorch's default for the optimizer where none was given.
  static double weight_decay(const adam_options& o) { return o.weight_decay.value_or(Decoupled ? 0.01 : 0.0); }
  static std::vector<std::pair<std::string, std::string>> describe(const adam_options& o) {
    return option_list{}
        .add("lr", o.lr)
        .add("beta1", o.beta1)
        .add("beta2", o.beta2)
        .add("eps", o.eps)
        .add("weight_decay", weight_decay(o))
        .add(o.schedule)
        .items();
  }

  Owner* owner_;
  adam_options o_;
  replica_buffers<T> m_, v_;
  step_state steps_;
};
}  // namespace detail

/// Adam (weight decay as L2 added to the gradient).
template <class Owner>
class adam : public detail::adam_impl<Owner, false> {
 public:
  adam(Owner& owner, adam_options o = {}) : detail::adam_impl<Owner, false>(owner, o) {}
};

/// AdamW (decoupled weight decay). PyTorch's default weight_decay for AdamW is 0.01.
template <class Owner>
class adamw : public detail::adam_impl<Owner, true> {
 public:
  adamw(Owner& owner, adam_options o = {}) : detail::adam_impl<Owner, true>(owner, o) {}
};

}  // namespace dp::inline DP_ABI::optim
