// What optimizers share: access to the owner of the parameters (an nn::trainer or a dp::parallel),
// the check that gradients are ready, the schedule, and named state. An optimizer is made from the
// owner, so it updates exactly the parameters being trained; each update is one fused kernel over
// the owner's flat parameter buffer, applied identically on every replica.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <dp/core/factory.hpp>
#include <dp/core/tensor.hpp>
#include <dp/nn/replica_access.hpp>
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

/// What an optimizer needs from the owner of the parameters.
template <class O>
concept parameter_owner = requires(O& o) {
  typename O::value_type;
  { o.replica_count() } -> std::convertible_to<std::size_t>;
  o.layout();
  o.gradients();
  o.set_gradients(nn::grad_state::none);
} && dp::detail::replica_access::visitable<O, detail::replica_probe<typename O::value_type>>;

namespace detail {

/// Throws unless the owner's gradients are complete (a backward since the last step, synchronised).
template <class O>
void require_gradients(const O& owner, const char* who) {
  switch (owner.gradients()) {
    case nn::grad_state::complete:
      return;
    case nn::grad_state::local:
      throw runtime_error(dp::detail::concat(
          "dp: ", who,
          ".step() after backward(..., dp::no_sync): the gradients are only accumulated locally and not "
          "synchronised; finish the accumulation with a plain backward before stepping"));
    case nn::grad_state::none:
      throw runtime_error(dp::detail::concat(
          "dp: ", who,
          ".step() without a backward since the last step: this optimizer updates the parameters of the "
          "trainer or dp::parallel it was made from; compute their gradients with its backward() first"));
  }
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

/// Named optimizer state (views of replica 0's flat state), for checkpoints.
template <class T>
struct named_state {
  std::string name;
  tensor<T> value;
};

}  // namespace dp::inline DP_ABI::optim
