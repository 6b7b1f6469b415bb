// The widths a layer declares for nn::sequential's compile-time check: `in_features` and
// `out_features` (0 or absent: not known), on the last dimension unless `features_axis` says the
// channel dimension (dimension 1: conv2d) or either (batch_norm: channels, last for [N, C]). A
// layer that keeps whatever width it gets says `preserves_width`; one that keeps only the
// channels (pooling) says `preserves_channels`.
#pragma once

#include <dp/config.hpp>

namespace dp::inline DP_ABI::nn {

enum class width_axis { last, channel, either };

namespace detail {

template <class L>
constexpr index_t in_width() {
  if constexpr (requires { L::in_features; }) {
    return L::in_features;
  } else {
    return 0;
  }
}
template <class L>
constexpr index_t out_width() {
  if constexpr (requires { L::out_features; }) {
    return L::out_features;
  } else {
    return 0;
  }
}
/// The axis of the width a layer takes, and of the one it gives (a sequential's may differ).
template <class L>
constexpr width_axis in_axis() {
  if constexpr (requires { L::in_features_axis; }) {
    return L::in_features_axis;
  } else if constexpr (requires { L::features_axis; }) {
    return L::features_axis;
  } else {
    return width_axis::last;
  }
}
template <class L>
constexpr width_axis out_axis() {
  if constexpr (requires { L::out_features_axis; }) {
    return L::out_features_axis;
  } else if constexpr (requires { L::features_axis; }) {
    return L::features_axis;
  } else {
    return width_axis::last;
  }
}
/// Whether widths on axes `a` and `b` are the same dimension (and so must agree).
constexpr bool same_axis(width_axis a, width_axis b) {
  return a == b || a == width_axis::either || b == width_axis::either;
}
/// Whether L passes on a width on `axis` unchanged.
template <class L>
constexpr bool preserves(width_axis axis) {
  if constexpr (requires { L::preserves_width; }) {
    return L::preserves_width;
  } else if constexpr (requires { L::preserves_channels; }) {
    return L::preserves_channels && axis != width_axis::last;
  } else {
    return false;
  }
}

/// A width between two layers: its size (0: not known) and axis.
struct width {
  index_t size = 0;
  width_axis axis = width_axis::last;
};

}  // namespace detail
}  // namespace dp::inline DP_ABI::nn
