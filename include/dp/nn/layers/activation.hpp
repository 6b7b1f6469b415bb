// Element-wise activations as modules (for nn::sequential). In forward code, call dp::relu(x),
// dp::gelu(x), dp::tanh(x), dp::sigmoid(x) directly: they are lazy and fuse with their neighbours.
#pragma once

#include <dp/expr/operators.hpp>

namespace dp::inline DP_ABI::nn {

#define DP_DETAIL_ACTIVATION(NAME)                \
  struct NAME {                                   \
    static constexpr bool preserves_width = true; \
    static void dp_members(auto&, auto&&) {}      \
    template <class X>                            \
    auto forward(const X& x) const {              \
      return dp::NAME(x);                         \
    }                                             \
    template <class X>                            \
    auto operator()(const X& x) const {           \
      return dp::NAME(x);                         \
    }                                             \
  };
DP_DETAIL_ACTIVATION(relu)
DP_DETAIL_ACTIVATION(gelu)
DP_DETAIL_ACTIVATION(tanh)
DP_DETAIL_ACTIVATION(sigmoid)
#undef DP_DETAIL_ACTIVATION

}  // namespace dp::inline DP_ABI::nn
