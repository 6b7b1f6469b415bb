// Layers that shape the flow: flatten (dimensions 1.. merged, like nn.Flatten) and residual<M>
// (x + M(x)).
#pragma once

#include <dp/nn/autograd/ops.hpp>
#include <dp/nn/module.hpp>
#include <dp/nn/width.hpp>

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

namespace detail {
/// Whether a block that names its widths keeps them (one that does not name them is checked at run time).
template <class M>
constexpr bool keeps_width() {
  return in_width<M>() == 0 || out_width<M>() == 0 ||
         (in_width<M>() == out_width<M>() && same_axis(in_axis<M>(), out_axis<M>()));
}
}  // namespace detail

/// y = x + block(x). The block must keep the width.
template <class M>
struct residual {
  static_assert(detail::keeps_width<M>(),
                "dp: residual<M>: the block's out_features differ from its in_features, so x + block(x) would "
                "broadcast or fail; make the block end at its input's width (or add a projection inside it)");
  static constexpr bool preserves_width = true;
  static constexpr index_t in_features = detail::in_width<M>();  // the block's input is checked too
  static constexpr width_axis features_axis = detail::in_axis<M>();
  M block;

  static void dp_members(auto& self, auto&& f) { f("block", self.block); }

  template <class X>
  auto forward(const X& x) const {
    auto in = detail::materialize(x);
    auto out = block.forward(in);
    // [N, 8] + [N, 1] would broadcast into a sum that is no residual, silently.
    DP_CHECK(out.shape() == in.shape(), shape_error, "dp: residual: the block maps shape ", in.shape(), " to ",
             out.shape(), "; x + block(x) needs the block to keep its input's shape");
    return in + out;
  }
  template <class X>
  auto operator()(const X& x) const {
    return forward(x);
  }
};

}  // namespace dp::inline DP_ABI::nn
