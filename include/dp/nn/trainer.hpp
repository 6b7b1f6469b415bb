// nn::trainer<Model>: trains one model on one device. It owns the model (moved in), keeps all
// parameters in one flat buffer (and their gradients in another, in reverse order of declaration,
// which is roughly the order backward finishes them, so gradients can later be reduced in buckets
// while backward runs), and caches one traced plan per input shape, mode and loss. dp::parallel runs one
// trainer per device; optimizers are made from a trainer or a parallel, never from loose tensors.
#pragma once

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include <dp/core/element_types.hpp>
#include <dp/core/replica_access.hpp>
#include <dp/core/tensor.hpp>
#include <dp/core/type_tag.hpp>
#include <dp/core/write_guard.hpp>
#include <dp/exec/factory.hpp>
#include <dp/nn/autograd/ops.hpp>
#include <dp/nn/buffer_snapshot.hpp>
#include <dp/nn/loss.hpp>
#include <dp/nn/mode.hpp>
#include <dp/nn/module.hpp>
#include <dp/nn/settings.hpp>
#include <dp/nn/trainer_access.hpp>

namespace dp::inline DP_ABI {

/// Tag for backward: accumulate this gradient locally and do not synchronise (the next plain
/// backward adds to it and synchronises).
struct no_sync_t {
  explicit constexpr no_sync_t() = default;
};
inline constexpr no_sync_t no_sync{};

namespace nn {

/// Where one parameter sits in the flat buffers.
struct param_entry {
  std::string name;
  index_t offset;
  dp::shape shape;

  /// This parameter's part of a flat buffer laid out like the parameters, in its shape (a view).
  template <class T>
  tensor<T> view(const tensor<T>& flat) const {
    return flat.slice(0, offset, offset + shape.numel()).reshape(shape);
  }
};

/// The state of the gradients between backward and the optimizer step.
enum class grad_state : std::uint8_t {
  none,      ///< no gradient since the last step
  local,     ///< accumulated with dp::no_sync, not yet synchronised
  complete,  ///< ready for a step
};

namespace detail {

/// Calls f(local_only, args...) with a trailing dp::no_sync taken off the arguments (local_only is
/// then true: the gradients accumulate without a synchronisation). Trainers and dp::parallel share it.
template <class F, class... Args>
decltype(auto) split_no_sync(const F& f, const Args&... args) {
  constexpr std::size_t n = sizeof...(Args);
  auto all = std::forward_as_tuple(args...);
  if constexpr (n > 0 && std::is_same_v<std::remove_cvref_t<std::tuple_element_t<n - 1, decltype(all)>>, no_sync_t>) {
    return [&]<std::size_t... I>(std::index_sequence<I...>) -> decltype(auto) {
      return f(true, std::get<I>(all)...);
    }(std::make_index_sequence<n - 1>{});
  } else {
    return f(false, args...);
  }
}

template <class P0, class... P>
constexpr auto first_of();
template <class... P>
constexpr auto first_non_void() {
  if constexpr (sizeof...(P) == 0) {
    return std::type_identity<void>{};
  } else {
    return first_of<P...>();
  }
}
template <class P0, class... P>
constexpr auto first_of() {
  if constexpr (!std::is_void_v<typename P0::type>) {
    return P0{};
  } else {
    return first_non_void<P...>();
  }
}

/// The element type of a model's parameters: a library module's value_type, or that of the first
/// member of an aggregate that has one.
template <class M>
constexpr auto model_value_probe() {
  using Mc = std::remove_cvref_t<M>;
  if constexpr (parameter_type<Mc> || buffer_type<Mc>) {
    return std::type_identity<typename Mc::value_type>{};
  } else if constexpr (requires { typename Mc::value_type; }) {
    return std::type_identity<typename Mc::value_type>{};
  } else if constexpr (declares_members<Mc> || !std::is_aggregate_v<Mc> || !std::is_class_v<Mc>) {
    return std::type_identity<void>{};
  } else {
    constexpr std::size_t n = reflect::field_count<Mc>();
    using tied = decltype(reflect::tie_fields<n>(std::declval<Mc&>()));
    return [&]<std::size_t... I>(std::index_sequence<I...>) {
      return first_non_void<decltype(model_value_probe<std::tuple_element_t<I, tied>>())...>();
    }(std::make_index_sequence<n>{});
  }
}

template <class M>
using model_value_t = typename decltype(model_value_probe<M>())::type;

inline constexpr int max_step_args = 8;

/// A traced plan for one combination of argument shapes and mode.
struct plan_entry {
  std::array<dp::shape, max_step_args> shapes{};
  std::array<int, max_step_args> kinds{};  // kind_of each argument
  std::array<int, max_step_args> slots{};
  int n = 0;
  bool training = true;
  std::unique_ptr<graph> g;
  int loss_slot = -1;
  // Parameter gradients this plan never writes, for the trainer's element type.
  std::tuple<std::vector<tensor<float>>, std::vector<tensor<double>>> zero;
  std::vector<int> ready_at;  // per range of a grad_ready_hook: the op after which it is final
  // The loss it traced: its type, and a copy when the loss compares with == (its options).
  const void* loss_type = nullptr;
  std::shared_ptr<const void> loss;
};

template <class Loss>
inline constexpr bool loss_has_value = std::equality_comparable<Loss> && std::is_copy_constructible_v<Loss>;

/// A loss is traced into a step's plan once per shape and mode, with whatever it holds baked in. So it
/// holds nothing (a captureless lambda) or compares what it holds with == (nn::cross_entropy_loss's
/// options): a later step whose loss is not equal to the traced one traces again. A lambda's captures
/// have no ==, so a changed capture (or a new lambda of the same type) would replay the first value.
template <class Loss>
constexpr bool check_loss() {
  constexpr bool ok = std::is_empty_v<Loss> || loss_has_value<Loss>;
  static_assert(ok,
                "dp: this loss holds values (a lambda's captures) it cannot compare, so a later step could not see "
                "that one changed and would replay the value traced first; use a lambda that captures nothing, or a "
                "struct holding the values as members with `bool operator==(const X&) const = default;` (a changed "
                "value then traces the step again); pass tensors the loss reads as arguments of backward()");
  return ok;
}

/// `v` in the fewest digits that read back as the same value: two values an error says differ print
/// differently.
template <class V>
std::string exact(V v) {
  char text[32];
  const auto end = std::to_chars(text, text + sizeof text, v).ptr;
  return std::string(text, end);
}

/// Whether plan `p` traced `loss`: the same type and, for a loss with ==, an equal value.
template <class Loss>
bool traced_loss(const plan_entry& p, const Loss& loss) {
  if (p.loss_type != &dp::detail::type_tag<Loss>) {
    return false;
  }
  if constexpr (loss_has_value<Loss>) {
    return *static_cast<const Loss*>(p.loss.get()) == loss;
  }
  return true;
}

/// What dp::parallel hears while backward runs: ready(r) for each range of the flat gradients (its
/// buckets), in the ranges' order, as soon as that range and every one before it are final, so
/// that their all-reduce overlaps the rest of backward; poll() after every op (communication
/// progress). Every rank announces the same ranges in the same order.
struct grad_ready_hook {
  std::span<const std::pair<index_t, index_t>> ranges;
  void* ctx = nullptr;
  void (*ready)(void* ctx, int range) = nullptr;
  void (*poll)(void* ctx) = nullptr;
};

/// The element type of a step argument, as a plan records it (a plan is reused only for the same
/// kinds and shapes): its index in dp::detail::model_element_types, -1 for anything but a tensor of
/// one of them.
template <class X>
constexpr int kind_of() {
  using Xr = std::remove_cvref_t<X>;
  if constexpr (requires { typename Xr::value_type; }) {  // nested: value_type is named only when it exists
    if constexpr (std::is_same_v<Xr, tensor<typename Xr::value_type>>) {
      return dp::detail::model_element_index<typename Xr::value_type>;
    }
  }
  return -1;
}

template <class X>
using arg_value_t = typename std::remove_cvref_t<X>::value_type;

/// A training step needs samples: the loss of an empty batch is undefined (a mean over nothing), so
/// an empty target is an error for every device count, before anything is computed or stepped.
inline void require_samples(const dp::shape& target) {
  DP_CHECK(target.numel() > 0, value_error, "dp: backward got an empty batch (the target has shape ", target,
           "): a training step needs at least one sample; skip empty batches");
}

/// A step whose loss is NaN or infinite stops training (unless allowed): its gradients would
/// poison every weight at the optimizer's next step. The caller then marks the gradients unusable,
/// so opt.step() refuses, and nothing has been updated.
inline void require_finite_loss(double loss, std::uint64_t step, bool allowed) {
  DP_CHECK(allowed || std::isfinite(loss), value_error, "dp: backward: the loss of step ", step, " is ",
           std::isnan(loss) ? "NaN" : (loss > 0 ? "+inf" : "-inf"),
           " (a NaN or infinity in the inputs or the weights, or a learning rate too large); nothing was updated, and "
           "gradients accumulated with dp::no_sync since the last optimizer step, if any, are dropped (start the "
           "accumulation again). To keep training through it, call allow_non_finite_loss(true) on the trainer or set "
           "parallel_options::allow_non_finite_loss");
}

/// skip_step's rule: a step whose loss came back NaN or infinite, before the optimizer's step. Such a
/// loss is the whole batch's, the same on every replica and rank, so every one skips it; a finite
/// one skipped on one rank alone would leave the ranks' models apart without a word.
inline void require_skippable(bool non_finite, grad_state s) {
  DP_CHECK(s != grad_state::none, value_error,
           "dp: skip_step: no step to skip (no backward since the optimizer's last step, or that step was undone "
           "already: skipped, or refused by clip_grad_norm)");
  DP_CHECK(non_finite, value_error,
           "dp: skip_step drops a step whose loss came back NaN or infinite (allow_non_finite_loss(true)); the last "
           "backward's loss was finite, or not read (backward_async), or the model was edited since. A step with a "
           "finite loss is the optimizer's to take; one whose gradients are not finite is refused and undone by "
           "clip_grad_norm");
}

}  // namespace detail

template <class Model>
class trainer {
  static_assert(detail::check_model<Model>());  // its own errors say what is wrong

 public:
  using model_type = Model;
  static_assert(!std::is_void_v<detail::model_value_t<Model>> || detail::reflect::too_many_fields<Model>,
                "dp: trainer<Model> cannot see the element type of the model's parameters (a model that lists its "
                "members with dp_members, or one without parameters): add `using value_type = float;` (or double) "
                "to the model");
  // float stands in after that error, so that it is the only one
  using value_type =
      std::conditional_t<std::is_void_v<detail::model_value_t<Model>>, float, detail::model_value_t<Model>>;
  using T = value_type;
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>,
                "dp: a model's parameters are float or double (and all of one type)");

  /// Takes the model and places its parameters and buffers on `d`.
  explicit trainer(Model model, dp::device d = dp::cpu()) : model_(std::move(model)), dev_(d) {
    nn::check_model<Model>();
    (void)&detail::settings_words<Model>;  // instantiated here: a wrong dp_settings is reported at the trainer
    const std::string unlisted = detail::unlisted_value(model_);
    DP_CHECK(unlisted.empty(), value_error, "dp: trainer<", detail::reflect::type_name<Model>(), ">: ", unlisted,
             " is a plain value of a module that lists its members, but dp_settings does not list it: a traced step "
             "would keep the value it saw (an edit changing it would go unseen) and dp::parallel would not give every "
             "replica and rank the same; list it: static void dp_settings(auto& self, auto&& f) { f(\"name\", "
             "self.name); }, or make it a static constexpr or a template argument");
    require_usable(d);
    bind();
  }
  trainer(const trainer&) = delete;
  trainer& operator=(const trainer&) = delete;
  ~trainer() {
    for (const auto& s : owned_) {
      dp::detail::mark_trained(s, nullptr);  // a handle the caller kept outlives the trainer: writable again
    }
  }

  /// The model, read-only: its parameters are views of the trainer's flat buffer, and a write through
  /// one is an error (see edit).
  const Model& model() const noexcept { return model_; }

  /// Changes the model between steps: f(Model&) may assign its parameters and buffers
  /// (`m.fc = nn::linear<4, 2>{}`, `m.fc.weight.assign(dp::clamp(m.fc.weight.value(), -1.f, 1.f))`).
  /// Besides the optimizer and dp::io::load, the one way to write them. Their values change, their
  /// memory stays the trainer's (see rebind). f may change module settings too (`m.drop.p = 0.1f`,
  /// any value nn::for_each_setting visits): the next step traces again with them. A buffer's
  /// synchronisation policy is fixed: a change is put back and refused.
  template <class F>
  void edit(F&& f) {
    static_assert(std::is_invocable_v<F&, Model&>,
                  "dp: edit(f) calls f(Model&) with the trained model: pass a callable that takes the model by "
                  "reference, e.g. [](auto& m) { m.fc.weight.assign(...); }");
    if constexpr (std::is_invocable_v<F&, Model&>) {  // else the assertion is the only error
      DP_CHECK(!retired_, runtime_error,
               "dp: edit on a trainer that was wrapped in a dp::parallel: the parallel trains the model now, so "
               "edit it there (par.edit(f))");
      const std::vector<std::int64_t> settings = detail::settings_words(model_);
      const std::vector<buffer_sync> policies = buffer_policies();
      non_finite_step_ = false;  // skip_step would put back buffers from before the edit
      try {
        const dp::detail::owner_write_scope owner(this);  // this model's, not another's
        f(model_);
      } catch (...) {
        retrace_if_changed(settings);
        (void)restore_policies(policies);
        (void)rebind();  // the members are home again; f's error is the one to report
        throw;
      }
      retrace_if_changed(settings);
      const std::string repolicied = restore_policies(policies);
      const std::string misshaped = rebind();
      DP_CHECK(misshaped.empty(), shape_error, "dp: edit(f) left ", misshaped,
               "; a parameter or buffer keeps its shape, so it was put back as it was");
      DP_CHECK(repolicied.empty(), value_error, "dp: edit(f) changed the synchronisation policy of buffer ", repolicied,
               "; a buffer's policy is fixed while it is trained (dp::parallel synchronises by it), so it was put "
               "back; build the model with the policy before a trainer takes it");
    }
  }
  dp::device device() const noexcept { return dev_; }

  void train() noexcept { training_ = true; }
  void eval() noexcept { training_ = false; }
  bool training() const noexcept { return training_; }

  /// Runs forward in the trainer's mode and returns the result evaluated to tensors. A training-mode
  /// forward that fails part-way (a later layer's shape error after batch_norm updated its
  /// statistics) leaves the buffers as they were, as a failed backward does.
  template <class... Args>
  auto operator()(const Args&... args) const {
    // Saved before the write guard opens (the copies are older than it); the copies are made once.
    // Not inside another model's forward (a trainer called from it): that forward's write guard
    // refuses writes into the copies, which are older than it.
    const bool keep = training_ && !check_snapshot_.empty() && dp::detail::current_write_lock().since == 0;
    if (keep) {
      check_snapshot_.save();
    }
    try {
      mode_scope mode(training_);
      const detail::replica_eval_scope unsynchronised(replica_ && !training_);
      const dp::detail::write_guard guard(locked_);
      return detail::materialize_output(model_.forward(args...));
    } catch (...) {
      if (keep) {
        try {
          check_snapshot_.restore();  // the guard has closed: the trainer writes its own buffers
        } catch (...) {               // forward's error is the one to report
        }
      }
      throw;
    }
  }

  /// One step's gradients: forward, loss, backward. The last argument is the target passed to the
  /// loss; the ones before it are the model's inputs. A trailing dp::no_sync accumulates. Returns the
  /// loss. The step is traced once per input shape, mode and loss (its type, and its value when it
  /// has ==, as the library's losses do). A loss holding values without == (a capturing lambda) is refused.
  template <class Loss, class... Args>
  double backward(const Loss& loss, const Args&... args) {
    const double l = read_loss(backward_async(loss, args...));
    if (!std::isfinite(l) && !allow_non_finite_) {
      undo_step();
      detail::require_finite_loss(l, step_ + 1, false);
    }
    non_finite_step_ = !std::isfinite(l);
    return l;
  }

  /// Whether a NaN or infinite loss is returned (true) or stops training with a dp::value_error
  /// (false, the default). backward_async never reads the loss, so it never checks.
  void allow_non_finite_loss(bool allow) noexcept { allow_non_finite_ = allow; }

  /// Drops the step whose loss backward just returned as NaN or infinite (allow_non_finite_loss):
  /// the model as it was before that backward (the buffers its forward updated, the step count) and
  /// its gradients gone (under dp::no_sync, those accumulated since the optimizer's last step too,
  /// while the earlier micro-batches' statistics and counts stay).
  /// Training then goes on as if the batch had never come, and a checkpoint may be saved. Any other
  /// step is refused with a dp::value_error (see detail::require_skippable).
  void skip_step() {
    detail::require_skippable(non_finite_step_, state_);
    undo_step();
  }

  /// A debug mode, like torch.jit.trace's check_trace: each step that replays a traced plan also
  /// traces forward and the loss again on its inputs and compares the two losses, and the buffers
  /// the two update, bit for bit. A difference is a dp::value_error: forward read something besides
  /// the model and its arguments (a global, say) that changed since the trace, which a replay cannot
  /// see. It costs a second forward (its activations live while the step runs) and read-backs each
  /// step, so it cannot run inside a CUDA graph capture (a device_error says so).
  void check_trace(bool on) noexcept { check_trace_ = on; }

  /// backward without reading the loss back: returns it as a one-element tensor on the trainer's
  /// device (overwritten by the next step of the same input shape). Nothing in a steady step then
  /// waits for the device (check_trace off), so the step can be captured in a CUDA graph; a replay reads the inputs
  /// and writes the loss at the addresses seen when it was captured, and repeats its step number
  /// (dropout masks).
  template <class Loss, class... Args>
  tensor<T> backward_async(const Loss& loss, const Args&... args) {
    DP_CHECK(!retired_, runtime_error,
             "dp: backward on a trainer that was moved into a dp::parallel: the parallel trains the model now, so "
             "call par.backward(...)");
    if constexpr (detail::check_loss<Loss>()) {
      return detail::split_no_sync(
          [&](bool local_only, const auto&... a) { return enqueue_grads(loss, local_only, T(1), 0, nullptr, a...); },
          args...);
    } else {
      return tensor<T>{};  // check_loss's message is the error
    }
  }

  /// The layout of the flat buffers (names, offsets, shapes), in PyTorch's parameter names.
  const std::vector<param_entry>& layout() const noexcept { return layout_; }
  /// Whether gradients are ready for a step (none, local after no_sync, or complete).
  grad_state gradients() const noexcept { return state_; }
  /// Training steps so far (they seed dropout's random streams).
  std::uint64_t steps() const noexcept { return step_; }
  /// A trainer is one replica.
  std::size_t replica_count() const noexcept { return 1; }
  /// The most plans a trainer on the host keeps: past it, the one used least recently goes (its
  /// memory with it), and traces again if its shapes, mode and loss come back. A loss whose value
  /// changes every step (an annealed label smoothing) or inputs of ever new shapes would otherwise
  /// keep every step's activations. A GPU trainer keeps every plan: a captured CUDA graph may replay
  /// into a dropped one's memory, which would then have to be kept anyway.
  static constexpr std::size_t max_plans = 64;
  /// The number of traced plans kept (one per input shape, mode and loss seen; at most max_plans on
  /// the host).
  std::size_t plan_count() const noexcept { return plans_.size(); }
  /// Whether this trainer's model was moved into a dp::parallel (it trains nothing any more).
  bool retired() const noexcept { return retired_; }

 private:
  // Everything below reaches the flat buffers or replaces state: only optimizers and checkpoints use
  // it, through dp::detail::replica_access, and dp::parallel, through dp::detail::trainer_access.
  friend struct dp::detail::replica_access;
  friend struct dp::detail::trainer_access;

  /// The general form dp::parallel uses: `scale` multiplies the loss's gradient (a replica's share of
  /// the global batch) and `sample_offset` is the global index of this replica's first sample.
  /// With a `hook`, it hears which gradient ranges are final while backward runs.
  template <class Loss, class... Args>
  double step_grads(const Loss& loss, bool local_only, T scale, index_t sample_offset,
                    const detail::grad_ready_hook* hook, const Args&... args) {
    return read_loss(enqueue_grads(loss, local_only, scale, sample_offset, hook, args...));
  }

  /// The loss on the host. A non-finite one may come from a target a GPU kernel flagged: that error
  /// is raised first. A fault the reading itself raises (a device's status word) fails the step too:
  /// its gradients are not used.
  double read_loss(const tensor<T>& loss) {
    try {
      const double l = static_cast<double>(loss.item());
      if (!std::isfinite(l) && last_ != nullptr) {
        last_->g->check_flags();
      }
      return l;
    } catch (...) {
      undo_step();
      throw;
    }
  }

  /// Puts the model back as it was before the step that began last (its buffers, the step count)
  /// and drops its gradients; nothing when no step began since then (or it was undone already).
  void undo_step() {
    state_ = grad_state::none;
    non_finite_step_ = false;
    if (!undo_armed_) {
      return;
    }
    undo_armed_ = false;
    step_ = undo_from_;
    if (undo_buffers_) {
      snapshot_.restore();
    }
  }
  /// Forgets the last step, so that undo_step() leaves it (dp::parallel, before a step's replicas start).
  void forget_step() noexcept { undo_armed_ = false; }
  /// Makes undo_step() put back what a step beginning now may change: the step count, and the
  /// buffers where forward may update them. dp::parallel arms a replica without samples too, since
  /// the buffer sync writes its buffers.
  void arm_undo() {
    const bool buffers = !snapshot_.empty() && !(replica_ && !training_);  // there nn::update is refused
    if (buffers) {
      snapshot_.save();  // first: a copy that fails half-way must not be restored later
    }
    undo_buffers_ = buffers;
    undo_from_ = step_;
    undo_armed_ = true;
    non_finite_step_ = false;  // until backward reads this step's loss
  }

  /// step_grads without the read-back: the loss stays on the device.
  template <class Loss, class... Args>
  tensor<T> enqueue_grads(const Loss& loss, bool local_only, T scale, index_t sample_offset,
                          const detail::grad_ready_hook* hook, const Args&... args) {
    static_assert(sizeof...(Args) >= 2, "dp: backward(loss, inputs..., target) needs at least one input and a target");
    static_assert(sizeof...(Args) <= detail::max_step_args, "dp: backward takes at most 8 inputs and targets");
    constexpr bool tensors = ((detail::kind_of<Args>() >= 0) && ...);
    static_assert(tensors,
                  "dp: backward's inputs and target are dp::tensor<float>, dp::tensor<double> or "
                  "dp::tensor<std::int64_t> (class indices)");
    if constexpr (sizeof...(Args) < 2 || sizeof...(Args) > detail::max_step_args || !tensors) {
      return tensor<T>{};  // the static_assert above is the error, and the only one
    } else {
      std::size_t i = 0;
      (check_arg(args, i++, sizeof...(Args)), ...);
      detail::require_samples(std::get<sizeof...(Args) - 1>(std::forward_as_tuple(args...)).shape());
      // A step that fails leaves the model as it was: forward may change batch statistics and
      // counters (nn::update), so they are copied first (models without buffers copy nothing).
      arm_undo();
      try {
        return run_step(loss, local_only, scale, sample_offset, hook, args...);
      } catch (...) {
        undo_step();
        throw;
      }
    }
  }

  template <class Loss, class... Args>
  tensor<T> run_step(const Loss& loss, bool local_only, T scale, index_t sample_offset,
                     const detail::grad_ready_hook* hook, const Args&... args) {
    detail::plan_entry* p = find_plan(loss, args...);
    const bool traced_now = p == nullptr;
    if (traced_now) {
      p = trace(loss, sample_offset, args...);
    }
    last_ = p;
    detail::graph& g = *p->g;
    g.step = step_;
    g.sample_offset = sample_offset;
    if (!traced_now) {
      bind_args(*p, args...);
      const std::unique_ptr<detail::plan_entry> fresh = check_trace_ ? retrace(loss, sample_offset, args...) : nullptr;
      mode_scope mode(p->training);
      g.run_forward();
      if (fresh) {
        compare_with_trace(*p, *fresh);
      }
    }
    const bool accumulate = state_ == grad_state::local;
    g.grad<T>(p->loss_slot).fill(scale);
    g.accumulate_params = accumulate;
    if (!accumulate) {  // backward never writes these: zero them first, so their ranges are final now
      for (auto& z : zero_list(*p)) {
        z.fill(T(0));
      }
    }
    if (hook == nullptr) {
      g.run_backward();
    } else {
      announce_while_backward(*p, *hook);
    }
    ++step_;
    state_ = local_only ? grad_state::local : grad_state::complete;
    return g.value<T>(p->loss_slot);
  }

  /// Calls f(0, flat parameters, flat gradients): a trainer is one replica.
  template <class F>
  void for_each_replica(F&& f) {
    f(std::size_t{0}, params_, grads_);
  }
  const tensor<T>& flat_params() const noexcept { return params_; }
  const tensor<T>& flat_grads() const noexcept { return grads_; }
  void set_gradients(grad_state s) noexcept { state_ = s; }
  Model& mutable_model() noexcept { return model_; }
  /// Applies `f` to the model (loading weights: values are written into the existing storage).
  template <class F>
  void update_model(F&& f) {
    const std::vector<std::int64_t> settings = detail::settings_words(model_);
    const dp::detail::owner_write_scope owner;
    try {
      f(model_);
    } catch (...) {
      retrace_if_changed(settings);
      throw;
    }
    state_ = grad_state::none;
    retrace_if_changed(settings);  // a checkpoint's dropout seeds
  }
  /// Calls f(model) (a trainer is one replica).
  template <class F>
  void visit_models(F&& f) const {
    f(model_);
  }
  /// A load's agreement before its first write (replica_access): one process has nothing to agree on.
  void agree_before_update(const char*, bool, std::optional<std::uint64_t>) const noexcept {}
  /// An optimizer's agreement on its options (replica_access): one process has nothing to agree on.
  void agree_options(const char*, const std::string&) const noexcept {}
  /// The module settings as words (dp::parallel broadcasts replica 0's).
  std::vector<std::int64_t> settings() const { return detail::settings_words(model_); }
  /// Takes another replica's settings.
  void adopt_settings(const std::vector<std::int64_t>& words) {
    if (detail::apply_settings(model_, words)) {
      drop_plans();
    }
  }
  /// The traced steps read the module settings they saw: after a change they are replaced, and the
  /// next step traces again (a CUDA graph captured before must be captured again).
  void retrace_if_changed(const std::vector<std::int64_t>& before) {
    if (detail::settings_words(model_) != before) {
      drop_plans();
    }
  }
  void drop_plans() {
    for (auto& p : plans_) {
      drop_plan(std::move(p));
    }
    plans_.clear();
    last_ = nullptr;
  }
  void drop_plan(std::unique_ptr<detail::plan_entry> p) {
    if (!dev_.is_cpu()) {  // a CUDA graph captured from it may still replay into its memory
      replaced_plans_.push_back(std::move(p));
    }
  }
  /// Restores the step counter (it seeds dropout's random streams) when resuming a run.
  void restore_steps(std::uint64_t steps) noexcept { step_ = steps; }
  /// Marks the trainer as one of dp::parallel's replicas: nn::update refuses evaluation mode.
  void make_replica() noexcept { replica_ = true; }
  /// Marks the trainer as moved into a dp::parallel: optimizers made from it refuse to step.
  void retire() noexcept {
    retired_ = true;
    state_ = grad_state::none;
  }

  template <class X>
  /// Argument `i` of `n` (the last is the target) is defined and on the trainer's device.
  void check_arg(const X& x, std::size_t i, std::size_t n) const {
    const auto which = [&] {
      return i + 1 == n ? std::string("the target (last argument)")
                        : dp::detail::concat("input ", i, " (argument ", i + 1, " after the loss)");
    };
    DP_CHECK(x.defined(), value_error, "dp: backward got an undefined tensor as ", which());
    DP_CHECK(x.device() == dev_, device_error, "dp: the trainer runs on ", dev_, " but ", which(), " is on ",
             x.device(), "; move it with .to(", dev_, ")");
  }

  /// The plan for these arguments, mode and loss, moved to the back (plans_ runs from the least
  /// recently used); nullptr if none.
  template <class Loss, class... Args>
  detail::plan_entry* find_plan(const Loss& loss, const Args&... args) {
    for (auto it = plans_.begin(); it != plans_.end(); ++it) {
      const auto& pe = *it;
      if (pe->n != static_cast<int>(sizeof...(Args)) || pe->training != training_ || !detail::traced_loss(*pe, loss)) {
        continue;
      }
      int i = 0;
      bool ok = true;
      ((ok = ok && pe->kinds[i] == detail::kind_of<Args>() && pe->shapes[i] == args.shape(), ++i), ...);
      if (ok) {
        std::rotate(it, it + 1, plans_.end());  // no allocation: a steady step stays allocation-free
        return plans_.back().get();
      }
    }
    return nullptr;
  }

  template <class... Args>
  void bind_args(detail::plan_entry& p, const Args&... args) {
    int i = 0;
    ((p.g->template value<detail::arg_value_t<Args>>(p.slots[i++]) = args.contiguous()), ...);
  }

  template <class Loss, class... Args>
  detail::plan_entry* trace(const Loss& loss, index_t sample_offset, const Args&... args) {
    auto p = record_plan(true, loss, sample_offset, args...);
    if (dev_.is_cpu() && plans_.size() >= max_plans) {
      if (last_ == plans_.front().get()) {
        last_ = nullptr;
      }
      drop_plan(std::move(plans_.front()));
      plans_.erase(plans_.begin());
    }
    plans_.push_back(std::move(p));
    return plans_.back().get();
  }

  /// check_trace: traces this step again into a plan of its own (forward and the loss run on the
  /// current inputs, reading whatever they read now), then puts back the buffers that trace updated,
  /// so that the replay which follows starts from the same state.
  template <class Loss, class... Args>
  std::unique_ptr<detail::plan_entry> retrace(const Loss& loss, index_t sample_offset, const Args&... args) {
    DP_CHECK(!dev_.is_cuda() || !dp::detail::pool_of(dev_).capturing(), device_error,
             "dp: check_trace cannot run while a CUDA graph is captured on ", dev_,
             ": it traces each step again and reads both losses back; turn it off (check_trace(false)) for the "
             "steps you capture");
    const bool buffers = !check_snapshot_.empty();  // nn::update runs in either mode
    if (buffers) {
      check_snapshot_.save();
    }
    std::unique_ptr<detail::plan_entry> fresh = record_plan(false, loss, sample_offset, args...);
    if (buffers) {
      traced_buffers_.save();
      check_snapshot_.restore();
    }
    return fresh;
  }
  /// check_trace: the replayed loss and buffer updates must be the fresh trace's, bit for bit (the
  /// same operations run on the same values; a NaN matches a NaN).
  void compare_with_trace(detail::plan_entry& replayed, detail::plan_entry& fresh) {
    const T a = replayed.g->template value<T>(replayed.loss_slot).item();
    const T b = fresh.g->template value<T>(fresh.loss_slot).item();
    std::string differs;
    if (!(std::isnan(a) && std::isnan(b)) && std::memcmp(&a, &b, sizeof(T)) != 0) {
      differs = dp::detail::concat("'s loss is ", detail::exact(a), " replaying the plan traced before, but ",
                                   detail::exact(b), " when forward is traced again");
    } else if (const std::string name = traced_buffers_.first_changed(); !name.empty()) {
      differs = dp::detail::concat(" updates buffer '", name,
                                   "' one way replaying the plan traced before and another when forward is traced "
                                   "again");
    }
    DP_CHECK(differs.empty(), value_error, "dp: check_trace: step ", step_ + 1, differs,
             ": forward or the loss reads a value that changed since the trace without the trainer seeing it (a "
             "global, a static, another object's member, a value captured by reference, a member the loss's == "
             "skips, or a number of a module with a constructor that dp_settings does not list), and a traced step "
             "keeps the value it saw; make it a module setting (dp_settings: a change traces again), an nn::buffer, "
             "a loss member its == compares, or an argument of backward()");
  }

  /// Traces forward and the loss (they compute as they record). A plan to replay is frozen (its
  /// backward planned, gradients allocated); check_trace's second trace needs only the loss.
  template <class Loss, class... Args>
  std::unique_ptr<detail::plan_entry> record_plan(bool to_replay, const Loss& loss, index_t sample_offset,
                                                  const Args&... args) {
    auto pe = std::make_unique<detail::plan_entry>();
    pe->g = std::make_unique<detail::graph>();
    pe->n = sizeof...(Args);
    pe->training = training_;
    pe->loss_type = &dp::detail::type_tag<Loss>;
    if constexpr (detail::loss_has_value<Loss>) {
      pe->loss = std::make_shared<const Loss>(loss);
    }
    detail::graph& g = *pe->g;
    g.step = step_;
    g.sample_offset = sample_offset;
    g.parameters = params_.storage().get();
    {
      int i = 0;
      ((pe->kinds[i] = detail::kind_of<Args>(), pe->shapes[i] = args.shape(),
        pe->slots[i] = g.add_slot<detail::arg_value_t<Args>>(args.contiguous(), false), ++i),
       ...);
    }
    mode_scope mode(training_);
    const detail::replica_eval_scope unsynchronised(replica_ && !training_);
    // Forward records nn::update's buffer writes into g; any other write into the model's storage
    // would happen once, at trace time, and is refused.
    const detail::trace_scope tracing(&g);
    const dp::detail::write_guard guard(locked_);
    auto vars = [&]<std::size_t... I>(std::index_sequence<I...>) {
      return std::tuple{g.make_var<detail::arg_value_t<Args>>(pe->slots[I])...};
    }(std::index_sequence_for<Args...>{});
    constexpr std::size_t n = sizeof...(Args);
    auto out = [&]<std::size_t... I>(std::index_sequence<I...>) {
      return call_forward(std::get<I>(vars)...);
    }(std::make_index_sequence<n - 1>{});
    auto l = detail::materialize(loss(out, std::get<n - 1>(vars)));
    using L = decltype(l);
    constexpr bool traced_loss = detail::is_var<L>::value && std::is_same_v<typename L::value_type, T>;
    static_assert(traced_loss,
                  "dp: the loss must be computed from the model's output with dp operations (a traced value of the "
                  "model's element type)");
    if constexpr (traced_loss) {  // else the static_assert is the error, and the only one
      DP_CHECK(l.numel() == 1, shape_error, "dp: the loss must be a single value, got shape ", l.shape());
      pe->loss_slot = l.slot();
      DP_CHECK(detail::grad_flows(l), value_error,
               "dp: the loss does not depend on any parameter of the model (or is detached), so there is nothing to "
               "train");
    }
    if (!to_replay) {
      return pe;
    }
    if constexpr (traced_loss) {
      g.freeze<T>(pe->loss_slot);
    }
    for (const auto& e : layout_) {
      const tensor<T> gv = grads_.slice(0, e.offset, e.offset + e.shape.numel());
      if (gv.numel() > 0 && !g.writes_param_grad(gv.data())) {
        zero_list(*pe).push_back(gv);
      }
    }
    return pe;
  }

  /// Runs backward and calls hook.ready for each range once it and the ranges before it are final.
  void announce_while_backward(detail::plan_entry& p, const detail::grad_ready_hook& hook) {
    detail::graph& g = *p.g;
    const int ops = static_cast<int>(g.op_count()), n = static_cast<int>(hook.ranges.size());
    if (static_cast<int>(p.ready_at.size()) != n) {
      // The last op (the lowest index: backward runs ops from the last) writing into each range.
      p.ready_at.assign(static_cast<std::size_t>(n), ops);
      const index_t base = grads_.storage_offset();
      for (const auto& w : g.param_writes()) {
        if (w.storage != grads_.storage().get()) {
          continue;
        }
        for (int r = 0; r < n; ++r) {
          const auto [lo, hi] = hook.ranges[static_cast<std::size_t>(r)];
          if (w.begin - base < hi && lo < w.end - base) {
            p.ready_at[static_cast<std::size_t>(r)] = std::min(p.ready_at[static_cast<std::size_t>(r)], w.op);
          }
        }
      }
    }
    int next = 0;
    auto announce = [&](int after) {
      while (next < n && p.ready_at[static_cast<std::size_t>(next)] >= after) {
        hook.ready(hook.ctx, next++);
      }
    };
    announce(ops);
    g.run_backward([&](int i) {
      announce(i);
      hook.poll(hook.ctx);
    });
    announce(-1);
  }

  static std::vector<tensor<T>>& zero_list(detail::plan_entry& p) { return std::get<std::vector<tensor<T>>>(p.zero); }

  template <class... V>
  auto call_forward(const V&... v) const {
    constexpr bool callable = requires(const Model& m) { m.forward(v...); };
    static_assert(callable,
                  "dp: the model needs a const forward taking its inputs: `auto forward(auto x) const` (const: state "
                  "changes only through nn::buffer, never by writing members)");
    if constexpr (callable) {
      return model_.forward(v...);
    } else {
      return tensor<T>{};  // the static_assert above is the error, and the only one
    }
  }

  /// Moves every parameter into one flat buffer on the device (reverse declaration order), every
  /// gradient into another, and every buffer to the device.
  void bind() {
    std::vector<std::pair<std::string, parameter<T>*>> ps;
    for_each_parameter(model_, [&](const std::string& name, auto& p) {
      static_assert(std::is_same_v<typename std::remove_cvref_t<decltype(p)>::value_type, T>,
                    "dp: all parameters of a model have one element type: declare every nn::parameter<T> and "
                    "layer of the model with the same T (float or double)");
      ps.emplace_back(name, &p);
    });
    // A parameter listed twice (weights tied by listing one member under two names) would get two
    // slots: one trained, one stale, which checkpoints and edit() would then read.
    std::vector<std::pair<const parameter<T>*, std::size_t>> seen;
    for (std::size_t i = 0; i < ps.size(); ++i) {
      seen.emplace_back(ps[i].second, i);
    }
    std::sort(seen.begin(), seen.end(), [](const auto& a, const auto& b) {
      const std::less<const parameter<T>*> before;  // a total order, as `<` on unrelated pointers is not
      return before(a.first, b.first) || (a.first == b.first && a.second < b.second);
    });
    for (std::size_t i = 1; i < seen.size(); ++i) {
      DP_CHECK(seen[i].first != seen[i - 1].first, value_error, "dp: the model lists one parameter twice, as '",
               ps[seen[i - 1].second].first, "' and '", ps[seen[i].second].first,
               "': a parameter has one slot and one gradient, so list it once (weights are tied by using the one "
               "member in both places of forward)");
    }
    constexpr index_t align = 16;  // elements: every parameter starts on a 64-byte boundary
    index_t total = 0;
    for (auto it = ps.rbegin(); it != ps.rend(); ++it) {
      const parameter<T>& p = *it->second;
      DP_CHECK(p.value().defined(), value_error, "dp: parameter ", it->first, " has no value");
      layout_.push_back({it->first, total, p.shape()});
      total += (p.numel() + align - 1) / align * align;
    }
    params_ = zeros<T>({total}, dev_);
    grads_ = zeros<T>({total}, dev_);
    for (std::size_t k = 0; k < layout_.size(); ++k) {
      parameter<T>& p = *ps[ps.size() - 1 - k].second;
      const auto& e = layout_[k];
      tensor<T> v = e.view(params_);
      v.assign(p.value().to(dev_));
      detail::param_access::value(p) = v;
      detail::param_access::grad(p) = e.view(grads_);
    }
    owned_.push_back(params_.storage());
    for_each_buffer(model_, [&](const std::string&, auto& b) {
      auto& v = detail::param_access::value(b);
      v = v.to(dev_).clone();
      owned_.push_back(v.storage());
      buffer_homes_.emplace_back(v);
    });
    for (const auto& st : owned_) {
      locked_.push_back(st.get());
      dp::detail::mark_trained(st, this);
    }
    snapshot_ = detail::buffer_snapshot(model_);
    check_snapshot_ = detail::buffer_snapshot(model_);
    traced_buffers_ = detail::buffer_snapshot(model_);
  }

  std::vector<buffer_sync> buffer_policies() {
    std::vector<buffer_sync> out;
    for_each_buffer(model_, [&](const std::string&, const auto& b) { out.push_back(b.sync()); });
    return out;
  }
  /// Puts each buffer's synchronisation policy back as `before` has it; names the first that f
  /// changed, or "".
  std::string restore_policies(const std::vector<buffer_sync>& before) {
    std::string changed;
    std::size_t k = 0;
    for_each_buffer(model_, [&](const std::string& name, auto& b) {
      const buffer_sync was = before[k++];
      if (b.sync() != was) {
        changed = changed.empty() ? name : changed;
        detail::param_access::sync(b) = was;
      }
    });
    return changed;
  }

  /// After edit's f: every parameter and buffer views the trainer's memory again, so that the
  /// optimizer, the buffer synchronisation and a checkpoint keep seeing what the model shows. A
  /// member f moved from keeps the values in that memory; one f swapped or rebound writes its values
  /// there. Returns the first member f left with another shape (put back as it was), or "".
  [[nodiscard]] std::string rebind() {
    const dp::detail::owner_write_scope owner;
    std::string misshaped;
    const auto home_again = [&](const std::string& name, auto& v, const auto& home) {
      if (v.shares_storage(home) && v.data() == home.data() && v.shape() == home.shape()) {
        return;
      }
      if (v.defined() && v.shape() == home.shape()) {
        auto mine = home;
        mine.assign(v.device() == dev_ ? v : v.to(dev_));
      } else if (v.defined() && misshaped.empty()) {
        misshaped = dp::detail::concat(name, " of shape ", v.shape(), " (the model's is ", home.shape(), ")");
      }
      v = home;
    };
    std::size_t j = 0, k = 0;
    for_each_parameter(model_, [&](const std::string& name, auto& p) {
      const param_entry& e = layout_[layout_.size() - 1 - j++];
      home_again(name, detail::param_access::value(p), e.view(params_));
      detail::param_access::grad(p) = e.view(grads_);
    });
    for_each_buffer(model_, [&](const std::string& name, auto& b) {
      auto& v = detail::param_access::value(b);
      home_again(name, v, std::get<std::remove_cvref_t<decltype(v)>>(buffer_homes_[k++]));
    });
    return misshaped;
  }

  Model model_;
  dp::device dev_;
  tensor<T> params_, grads_;
  std::vector<param_entry> layout_;
  std::vector<dp::detail::storage_ref> owned_;              // the parameters' and buffers' storage, marked trained
  std::vector<dp::detail::any_model_tensor> buffer_homes_;  // each buffer's tensor, for rebind()
  std::vector<const dp::detail::storage*> locked_;          // the same, for forward's write guard
  std::vector<std::unique_ptr<detail::plan_entry>> plans_;
  std::vector<std::unique_ptr<detail::plan_entry>> replaced_plans_;  // on GPUs, kept until the trainer goes
  detail::plan_entry* last_ = nullptr;                               // the plan of the latest step
  bool training_ = true;
  bool retired_ = false;
  bool allow_non_finite_ = false;
  bool check_trace_ = false;
  bool replica_ = false;  // one of dp::parallel's replicas
  std::uint64_t step_ = 0;
  detail::buffer_snapshot snapshot_;  // the buffers before the last step, to undo it
  std::uint64_t undo_from_ = 0;       // the step count before it
  bool undo_armed_ = false, undo_buffers_ = false;
  bool non_finite_step_ = false;  // backward returned this step's loss as NaN or infinite
  grad_state state_ = grad_state::none;
  // check_trace: the buffers before its second trace; an eager training-mode forward: the buffers
  // before it, put back if it fails (the two never overlap).
  mutable detail::buffer_snapshot check_snapshot_;
  detail::buffer_snapshot traced_buffers_;  // check_trace: the buffers after its second trace
};

}  // namespace nn
}  // namespace dp::inline DP_ABI
