// Stochastic gradient descent with PyTorch's semantics: weight decay added to the gradient, momentum
// with dampening (the buffer starts at the first gradient unless one was loaded), Nesterov momentum.
// One fused pass.
#pragma once

#include <functional>
#include <string_view>

#include <dp/exec/factory.hpp>
#include <dp/exec/for_each.hpp>
#include <dp/exec/reduce.hpp>
#include <dp/expr/operators.hpp>
#include <dp/optim/optimizer.hpp>
#include <dp/optim/step_state.hpp>

namespace dp::inline DP_ABI::optim {

/// lr, momentum and weight_decay are finite and >= 0, dampening is in [0, 1]; the constructor
/// refuses anything else.
struct sgd_options {
  double lr = 0.01;
  double momentum = 0.0;
  double dampening = 0.0;
  bool nesterov = false;
  double weight_decay = 0.0;
  lr_schedule schedule = {};
};

namespace detail {
/// The step's scalars, from the steps before it: [1] the learning rate, [2] 1 when the momentum
/// buffer holds no value yet (it then starts at the gradient). `filled`, on the step's device, is
/// that flag kept between steps (null without momentum): the step count cannot tell, since a loaded
/// buffer is used at any count, as in PyTorch.
struct sgd_advance {
  double lr;
  lr_schedule schedule;
  double* filled;
  DP_HOST_DEVICE void operator()(double* s) const {
    s[1] = lr * schedule.factor(static_cast<std::int64_t>(s[0]));
    if (filled != nullptr) {
      s[2] = *filled == 0 ? 1 : 0;
      *filled = 1;
    }
  }
};

template <class T>
struct sgd_update {
  T* p;
  const T* g;
  T* buf;
  const double* scalars;  // sgd_advance's, on the device
  T momentum, dampening, weight_decay;
  bool nesterov, use_momentum;
  DP_HOST_DEVICE DP_FORCEINLINE void operator()(index_t i) const {
    const T lr = static_cast<T>(scalars[1]);
    T d = g[i] + weight_decay * p[i];
    if (use_momentum) {
      const T b = scalars[2] != 0 ? d : momentum * buf[i] + (T(1) - dampening) * d;
      buf[i] = b;
      d = nesterov ? d + momentum * b : b;
    }
    p[i] = p[i] - lr * d;
  }
};
}  // namespace detail

template <class Owner>
class sgd {
  static_assert(detail::check_owner<Owner>());

 public:
  using T = typename detail::owner_value<Owner>::type;

  sgd(Owner& owner, sgd_options o = {})
      : owner_(&owner),
        o_(detail::agreed_options(owner, kind(), o, checked, describe)),
        steps_(detail::replica_devices(owner)) {
    if (o.momentum != 0) {
      buf_ = detail::state_like(owner);
      for (const device d : detail::replica_devices(owner)) {
        filled_.push_back(zeros<double>({1}, d));
      }
    }
  }

  /// One update of every parameter (on every replica), from the owner's gradients.
  void step() {
    detail::require_gradients(*owner_, "sgd");
    dp::detail::replica_access::for_each_replica(
        *owner_, [&](std::size_t r, const tensor<T>& params, const tensor<T>& grads) {
          steps_.advance(r, detail::sgd_advance{o_.lr, o_.schedule, filled_.empty() ? nullptr : filled_[r].data()});
          dp::detail::for_each_index(
              params.device(), params.numel(),
              detail::sgd_update<T>{params.data(), grads.data(), buf_.empty() ? nullptr : buf_[r].data(),
                                    steps_.scalars(r), static_cast<T>(o_.momentum), static_cast<T>(o_.dampening),
                                    static_cast<T>(o_.weight_decay), o_.nesterov, o_.momentum != 0});
        });
    dp::detail::replica_access::set_gradients(*owner_, nn::grad_state::none);
  }

  /// The learning rate of the next step. Reads the step count from the device.
  double current_lr() const { return o_.lr * o_.schedule.factor(steps()); }
  /// Steps taken, replays of a captured step included (read from the device).
  std::int64_t steps() const { return steps_.steps(); }
  const sgd_options& options() const noexcept { return o_; }
  /// The options as (name, value) texts: a checkpoint stores them, and a resume made with other
  /// options is refused unless asked for.
  std::vector<std::pair<std::string, std::string>> option_values() const { return describe(o_); }
  /// The optimizer's name, stored in checkpoints: another optimizer with the same state names does
  /// not load them.
  static constexpr std::string_view kind() noexcept { return "sgd"; }
  /// The trainer or dp::parallel this optimizer trains (a checkpoint checks it is the one given).
  const Owner& owner() const noexcept { return *owner_; }

  /// Named state: "<parameter>.momentum_buffer" (PyTorch's key) for each parameter.
  std::vector<named_state<T>> state() const {
    std::vector<named_state<T>> out;
    if (!buf_.empty()) {
      for (const auto& e : owner_->layout()) {
        out.push_back({e.name + ".momentum_buffer", e.view(buf_[0]).clone()});
      }
    }
    return out;
  }
  /// Restores the step count and state (the same values on every replica): every name state()
  /// gives, once, with its parameter's shape. `before_write` runs after every check and copy, before
  /// the first write (where load_checkpoint's ranks agree). The next step uses the loaded buffers,
  /// whatever `steps` is (PyTorch's state, converted, comes with 0), unless `steps` is 0 and every
  /// buffer is zero: that is state() before the first step, which then starts at the gradient.
  void load_state(std::int64_t steps, const std::vector<named_state<T>>& s,
                  const std::function<void()>& before_write = {}) {
    bool filled = steps > 0;
    // Read after load_named_state's checks (every value defined, of its shape), before any write.
    const auto read_then_agree = [&] {
      for (const auto& ns : s) {
        filled = filled || dp::sum(dp::abs(ns.value)).item() != 0;
      }
      if (before_write) {
        before_write();
      }
    };
    detail::load_named_state<T>("sgd", owner_->layout(), steps, s, {{".momentum_buffer", &buf_}}, read_then_agree);
    steps_.set_steps(steps);
    for (auto& f : filled_) {
      f.fill(filled ? 1.0 : 0.0);
    }
  }

 private:
  /// The options, refused before any state is allocated unless each is in its range.
  static const sgd_options& checked(const sgd_options& o) {
    detail::check_non_negative_option<T>("sgd", "lr", o.lr);
    detail::check_non_negative_option<T>("sgd", "momentum", o.momentum);
    // The buffer takes (1 - dampening) of each new gradient, so dampening is a fraction.
    DP_CHECK(o.dampening >= 0 && o.dampening <= 1, value_error, "dp: sgd: dampening is ", o.dampening,
             "; expected a value in [0, 1]");
    DP_CHECK(!o.nesterov || (o.momentum > 0 && o.dampening == 0), value_error,
             "dp: sgd: Nesterov momentum needs momentum > 0 and dampening 0, got momentum ", o.momentum,
             " and dampening ", o.dampening);
    detail::check_non_negative_option<T>("sgd", "weight_decay", o.weight_decay);
    detail::check_schedule(o.schedule, "sgd");
    return o;
  }

  static std::vector<std::pair<std::string, std::string>> describe(const sgd_options& o) {
    return detail::option_list{}
        .add("lr", o.lr)
        .add("momentum", o.momentum)
        .add("dampening", o.dampening)
        .add("nesterov", o.nesterov)
        .add("weight_decay", o.weight_decay)
        .add(o.schedule)
        .items();
  }

  Owner* owner_;
  sgd_options o_;
  detail::replica_buffers<T> buf_;
  detail::replica_buffers<double> filled_;  // per replica, on its device: 1 once buf_ holds a value
  detail::step_state steps_;
};

}  // namespace dp::inline DP_ABI::optim
