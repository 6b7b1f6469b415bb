// How io (model files, checkpoints) reaches a model's parameters, buffers and random seeds without
// including nn, which sits beside it in the layers: io calls model_state<M>, and nn/module.hpp
// specialises it for every dp::nn::module. The pattern of the operand protocol: declared here, the
// lowest layer both can see, and implemented above.
#pragma once

#include <dp/config.hpp>

namespace dp::inline DP_ABI::detail {

template <class M>
inline constexpr bool no_model_state = false;

/// For a model type M (no cv or reference), a specialisation provides
///   static void for_each_tensor(X& m, F&& f): f(name, member) for every parameter and buffer, in a
///     state dict's order, with PyTorch's dotted names (X is M or const M);
///   static void for_each_seed(X& m, F&& f): f(name, seed) for every module that draws random numbers;
///   static void for_each_setting(X& m, F&& f): f(name, value) for every module setting (a number or
///     a flag of at most 64 bits: dropout's p and seed, a norm's eps).
template <class M>
struct model_state {
  static_assert(no_model_state<M>,
                "dp: only a dp::nn::module (or a trainer or dp::parallel holding one) is saved or loaded; if the "
                "type is one, include <dp/nn/module.hpp> (or <dp/dp.hpp>) before the call to dp::io");
  // No tensors, seeds or settings: the message above is then the only error.
  template <class X, class F>
  static void for_each_tensor(X&, F&&) {}
  template <class X, class F>
  static void for_each_seed(X&, F&&) {}
  template <class X, class F>
  static void for_each_setting(X&, F&&) {}
};

}  // namespace dp::inline DP_ABI::detail
