// What optimizers share: access to the owner of the parameters (an nn::trainer or a dp::parallel),
// the check that gradients are ready, the schedule, and named state. An optimizer is made from the
// owner, so it updates exactly the parameters being trained; each update is one fused kernel over
// the owner's flat parameter buffer, applied identically on every replica. A copy of an optimizer
// holds copies of its state (replica_buffers): the two step independently.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <exception>
#include <functional>
#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <dp/core/replica_access.hpp>
#include <dp/core/tensor.hpp>
#include <dp/exec/factory.hpp>
#include <dp/nn/trainer.hpp>
#include <dp/optim/schedule.hpp>

namespace dp::inline DP_ABI::optim {

namespace detail {
/// Stands in for a per-replica callback in the concept below (no lambdas in unevaluated operands).
template <class T>
struct replica_probe {
  void operator()(std::size_t, const tensor<T>&, const tensor<T>&) const {}
};
}  // namespace detail

/// What an optimizer needs from the owner of the parameters: an nn::trainer or a dp::parallel.
template <class O>
concept parameter_owner = requires(O& o) {
  typename O::value_type;
  { o.replica_count() } -> std::convertible_to<std::size_t>;
  o.layout();
  o.gradients();
} && dp::detail::replica_access::visitable<O, detail::replica_probe<typename O::value_type>>;

namespace detail {

/// The one compile-time check every optimizer and clip_grad_norm make of what they were given. Returns
/// true either way, so that static_assert(check_owner<O>()) adds no second error to its message.
template <class O>
constexpr bool check_owner() {
  static_assert(parameter_owner<O>,
                "dp: an optimizer is made from the object that trains the parameters, an nn::trainer or a "
                "dp::parallel: write dp::optim::sgd(trainer, {...}) or dp::optim::sgd(par, {...}), not sgd(model) "
                "or sgd(par.model()) (a model is not being trained, so its optimizer would update nothing)");
  return true;
}

/// The owner's element type, or float where the owner is not one (its error is check_owner's).
template <class O>
struct owner_value {
  using type = float;
};
template <parameter_owner O>
struct owner_value<O> {
  using type = typename O::value_type;
};

/// Who reads the gradients, for require_gradients' errors: an optimizer's step() or clip_grad_norm.
enum class gradient_reader : std::uint8_t { optimizer_step, clip_grad_norm };

/// Throws unless the owner's gradients are complete (a backward since the last step, synchronised).
/// `who` names the optimizer (its error says "<who>.step()") or, for clip_grad_norm, the function.
template <class O>
void require_gradients(const O& owner, const char* who, gradient_reader reader = gradient_reader::optimizer_step) {
  const bool step = reader == gradient_reader::optimizer_step;
  const char* call = step ? ".step()" : "";
  if constexpr (requires { owner.retired(); }) {
    DP_CHECK(!owner.retired(), runtime_error, "dp: ", who, call,
             step ? ": the trainer this optimizer was made from has been moved into a dp::parallel, which now "
                    "trains its model; make the optimizer from the parallel (dp::optim::sgd(par, {...}))"
                  : ": the trainer it was given has been moved into a dp::parallel, which now trains its model; "
                    "pass the parallel (dp::optim::clip_grad_norm(par, max_norm))");
  }
  switch (owner.gradients()) {
    case nn::grad_state::complete:
      return;
    case nn::grad_state::local:
      throw runtime_error(
          dp::detail::concat("dp: ", who, call,
                             " after backward(..., dp::no_sync): the gradients are only accumulated locally and not "
                             "synchronised; finish the accumulation with a plain backward before ",
                             step ? "stepping" : "clipping"));
    case nn::grad_state::none:
      throw runtime_error(dp::detail::concat(
          "dp: ", who, call,
          step ? " without a backward since the last step: this optimizer updates the parameters of the "
                 "trainer or dp::parallel it was made from; compute their gradients with its backward() first"
               : " without a backward since the last optimizer step: it scales the gradients of the trainer or "
                 "dp::parallel it is given; compute them with its backward() first"));
  }
}

/// An optimizer option that is a finite value >= 0 in the parameters' type T (lr, momentum,
/// weight_decay): a negative, infinite or NaN one would turn the parameters into NaN or step them the
/// wrong way (1e39 is finite as a double and infinite as a float).
template <class T>
void check_non_negative_option(const char* optimizer, const char* option, double value) {
  DP_CHECK(std::isfinite(value) && value >= 0 && value <= static_cast<double>(std::numeric_limits<T>::max()),
           value_error, "dp: ", optimizer, ": ", option, " is ", value, "; expected a finite value >= 0 (at most ",
           std::numeric_limits<T>::max(), ", the parameters' largest value)");
}

/// An optimizer's options `o`, checked by `check(o)` and, on a dp::parallel across processes, agreed
/// with the other ranks: every rank's optimizer must have the same kind and options, `describe(o)`
/// (a collective; a difference throws on every rank, naming it). A rank whose own check fails
/// still takes part, then throws its own error: refused alone, it left the others waiting for it
/// until the timeout.
template <class O, class Options, class Check, class Describe>
const Options& agreed_options(O& owner, std::string_view kind, const Options& o, Check check, Describe describe) {
  std::exception_ptr own;
  try {
    check(o);
  } catch (...) {
    own = std::current_exception();
  }
  std::string text = dp::detail::concat("optimizer ", kind, "\n");
  for (const auto& [name, value] : describe(o)) {
    text += dp::detail::concat(name, " ", value, "\n");
  }
  text += own ? "options in range no (its own error says which)\n" : "options in range yes\n";
  try {
    dp::detail::replica_access::agree_options(owner, std::string(kind).c_str(), text);
  } catch (...) {
    if (!own) {
      throw;
    }
  }
  if (own) {
    std::rethrow_exception(own);
  }
  return o;
}

/// Per-replica state tensors of the flat parameter size (zero-initialised).
template <class O>
std::vector<tensor<typename O::value_type>> state_like(O& owner) {
  std::vector<tensor<typename O::value_type>> out(owner.replica_count());
  dp::detail::replica_access::for_each_replica(
      owner, [&](std::size_t i, const auto& params, const auto&) { out[i] = zeros_like(params); });
  return out;
}

}  // namespace detail

/// Named optimizer state, for checkpoints: a copy of replica 0's (every replica holds the same), so
/// that writing to it cannot make one replica's state differ from the others'.
template <class T>
struct named_state {
  std::string name;
  tensor<T> value;
};

namespace detail {
/// One kind of per-parameter state an optimizer keeps: the suffix of its names and its per-replica
/// flat buffers (none: the optimizer keeps no such state, as sgd without momentum).
template <class T>
struct state_slot {
  const char* suffix;
  std::vector<tensor<T>>* buffers;
  bool non_negative = false;  // a mean of squares (Adam's exp_avg_sq): sqrt of a negative is NaN
};

/// A loaded state tensor holds finite values (and none below 0 where the slot is a mean of
/// squares): a NaN or inf one, or a negative mean of squares, would write NaN into the weights at
/// the next step, with no error.
template <class T>
void check_state_values(const char* optimizer, const std::string& name, const tensor<T>& value, bool non_negative) {
  const std::vector<T> v = value.to_vector();
  for (std::size_t i = 0; i < v.size(); ++i) {
    DP_CHECK(std::isfinite(v[i]) && (!non_negative || v[i] >= T(0)), value_error, "dp: ", optimizer, ": load_state: '",
             name, "' holds ", v[i], " at element ", i, "; expected finite values",
             non_negative ? " >= 0 (it is a running mean of squared gradients)" : "",
             " (a state from a run whose gradients overflowed cannot be trained on)");
  }
}

/// load_state of every optimizer: `given` names each state tensor state() names (parameter name and
/// slot suffix) exactly once, with its parameter's shape, and `steps` lies in [0, 2^53). All of that is
/// checked, and every copy made, before anything is written, so a refused load leaves the optimizer
/// as it was (the writes themselves are device work, whose failure, as any, leaves the state undefined).
template <class T>
void load_named_state(const char* optimizer, const std::vector<nn::param_entry>& layout, std::int64_t steps,
                      const std::vector<named_state<T>>& given, std::initializer_list<state_slot<T>> slots,
                      const std::function<void()>& before_write) {
  // The count lives in a double on the device: from 2^53 on, a step adds nothing to it.
  DP_CHECK(steps >= 0 && steps < (std::int64_t{1} << 53), value_error, "dp: ", optimizer,
           ": load_state: the step count must lie in [0, 2^53), got ", steps);
  struct target {
    std::string name;
    const nn::param_entry* param;
    std::vector<tensor<T>>* buffers;
    bool non_negative;
    const tensor<T>* value = nullptr;
  };
  std::vector<target> want;
  std::string kinds;  // for the error that names what is expected
  for (const auto& slot : slots) {
    if (!slot.buffers->empty()) {
      kinds += (kinds.empty() ? "'<parameter>" : " or '<parameter>") + std::string(slot.suffix) + "'";
      for (const auto& p : layout) {
        want.push_back({p.name + slot.suffix, &p, slot.buffers, slot.non_negative});
      }
    }
  }
  // Sorted by name, so that matching is n log n: a model may have thousands of parameters.
  std::sort(want.begin(), want.end(), [](const target& a, const target& b) { return a.name < b.name; });
  for (const auto& ns : given) {
    const auto t = std::lower_bound(want.begin(), want.end(), ns.name,
                                    [](const target& w, const std::string& n) { return w.name < n; });
    DP_CHECK(t != want.end() && t->name == ns.name, value_error, "dp: ", optimizer, ": load_state: no state is named '",
             ns.name, "' (",
             kinds.empty() ? std::string("this optimizer keeps none") : "expected " + kinds + " for a parameter", ")");
    DP_CHECK(t->value == nullptr, value_error, "dp: ", optimizer, ": load_state: '", ns.name, "' is given twice");
    DP_CHECK(ns.value.defined() && ns.value.shape() == t->param->shape, shape_error, "dp: ", optimizer,
             ": load_state: '", ns.name, "' has shape ", ns.value.shape(), ", expected its parameter's ",
             t->param->shape);
    t->value = &ns.value;
  }
  for (const auto& t : want) {
    DP_CHECK(t.value != nullptr, value_error, "dp: ", optimizer, ": load_state: '", t.name,
             "' is missing (state() names every tensor load_state needs)");
  }
  for (const auto& t : want) {
    check_state_values(optimizer, t.name, *t.value, t.non_negative);
  }
  // Every copy to a buffer's device is made before any buffer is written: one that fails (no room
  // on a device) leaves the state as it was.
  std::vector<tensor<T>> copies;
  for (const auto& t : want) {
    for (auto& b : *t.buffers) {
      copies.push_back(t.value->to(b.device()));
    }
  }
  if (before_write) {
    before_write();
  }
  std::size_t i = 0;
  for (const auto& t : want) {
    for (auto& b : *t.buffers) {
      t.param->view(b) = copies[i++];
    }
  }
}
}  // namespace detail

}  // namespace dp::inline DP_ABI::optim
