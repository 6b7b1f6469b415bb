// Layers that shape the flow: flatten (dimensions 1.. merged, like nn.Flatten) and residual<M>
// (x + M(x)).
#pragma once

#include <dp/nn/autograd/ops.hpp>
#include <dp/nn/module.hpp>

namespace dp::inline DP_ABI::nn {

struct flatten {
  int start_dim = 1;
  int end_dim = -1;
  static void dp_members(auto&, auto&&) {}
  static void dp_settings(auto& self, auto&& f) {
    f("start_dim", self.start_dim);
    f("end_dim", self.end_dim);
  }

  template <class X>
  auto forward(const X& x) const {
    return detail::materialize(x).flatten(start_dim, end_dim);
  }
  template <class X>
  auto operator()(const X& x) const {
    return forward(x);
  }
};

/// y = x + block(x). The block must keep the width.
template <class M>
struct residual {
  static constexpr bool preserves_width = true;
  M block;

  static void dp_members(auto& self, auto&& f) { f("block", self.block); }

  template <class X>
  auto forward(const X& x) const {
    auto in = detail::materialize(x);
    return in + block.forward(in);
  }
  template <class X>
  auto operator()(const X& x) const {
    return forward(x);
  }
};

}  // namespace dp::inline DP_ABI::nn
