// The geometry of a sliding K x K window with stride S and padding P over [N, C, H, W] planes, shared
// by conv2d and max_pool2d: output sizes, and the outputs whose windows cover an input element
// (found by bounds, so that gathers in backward do no division per window position).
#pragma once

#include <algorithm>

#include <dp/config.hpp>
#include <dp/core/shape.hpp>
#include <dp/exec/cpu.hpp>

namespace dp::inline DP_ABI::nn::detail {

struct window_geometry {
  index_t n, c, h, w, k, s, p, ho, wo;
  DP_HOST_DEVICE index_t ckk() const { return c * k * k; }
  DP_HOST_DEVICE index_t hw_out() const { return ho * wo; }

  /// Over an [N, C, H, W] input; ho or wo is 0 when the window does not fit (H + 2P < K: C++'s
  /// division would round the negative count up to an output of 1), or when H or W is 0 (a window
  /// of padding alone has no element: with K = 2P it would make an output of 1).
  static window_geometry of(const shape& in, index_t k, index_t s, index_t p) {
    auto out = [&](index_t x) { return x == 0 || x + 2 * p < k ? index_t{0} : (x + 2 * p - k) / s + 1; };
    return {in[0], in[1], in[2], in[3], k, s, p, out(in[2]), out(in[3])};
  }
};

/// The outputs o in [lo, hi) along one axis whose window covers input position x: o * s - p <= x
/// and x < o * s - p + k, with o in [0, out).
struct covering_outputs {
  index_t lo, hi;
  DP_HOST_DEVICE covering_outputs(index_t x, index_t k, index_t s, index_t p, index_t out) {
    const index_t last = (x + p) / s;     // the largest o with o * s - p <= x (x + p >= 0)
    const index_t reach = x + p - k + 1;  // o * s must exceed x + p - k
    const index_t first = reach <= 0 ? 0 : (reach + s - 1) / s;
    lo = first;
    hi = last + 1 < out ? last + 1 : out;
  }
};

/// Host grain for loops whose calls each cover `per_call` elements (a row, a block, a plane): about
/// parallel_grain elements per thread.
inline index_t window_grain(index_t per_call) {
  return std::max<index_t>(1, dp::detail::parallel_grain / std::max<index_t>(per_call, 1));
}

}  // namespace dp::inline DP_ABI::nn::detail
