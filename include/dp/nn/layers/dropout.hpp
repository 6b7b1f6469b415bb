// nn::dropout: zeroes each element with probability p in training and scales the rest by 1/(1-p).
// The mask is a counter-based random draw, never stored: its value at an element is a function of
// (seed, step, global sample index, element), so backward recomputes it, and the masks do not depend
// on how a batch is split across devices.
#pragma once

#include <atomic>
#include <cstdint>
#include <type_traits>

#include <dp/expr/node.hpp>
#include <dp/expr/random.hpp>
#include <dp/nn/autograd/ops.hpp>
#include <dp/nn/mode.hpp>
#include <dp/nn/parameter.hpp>

namespace dp::inline DP_ABI::nn {
namespace detail {

/// A seed for a new module, from the initialisation stream (so models built after manual_seed agree).
inline std::uint64_t next_module_seed() {
  auto& st = init_stream();
  return (st.seed * 0x9E3779B97F4A7C15ull) ^ (0x5DEECE66Dull + st.counter++);
}

template <class T>
struct dropout_gen {
  using value_type = T;
  std::uint64_t seed, stream;
  index_t base;
  float p;
  T scale;
  bool active;
  DP_HOST_DEVICE DP_FORCEINLINE T operator()(index_t i) const {
    const float u =
        dp::detail::uniform01f(dp::detail::philox4x32(static_cast<std::uint64_t>(base + i), stream, seed).v[0]);
    const T kept = u >= p ? scale : T(0);
    return active ? kept : T(1);
  }
};

template <class T>
struct dropout_node {
  using value_type = T;
  graph* g;  // null outside a trace
  std::uint64_t seed, eager_step;
  std::uint64_t call;    // the random operations the trace recorded before this one
  index_t eager_offset;  // the batch row of row 0, outside a trace
  float p;
  bool active;
  dp::shape shape;
  dp::device dev;

  dropout_gen<T> gen() const {
    const index_t per_sample = shape.rank() && shape[0] ? shape.numel() / shape[0] : 0;
    const std::uint64_t step = g ? g->step : eager_step;
    const index_t base = (g ? g->sample_offset : eager_offset) * per_sample;
    // A traced call's stream: the step's, moved by a large odd constant per earlier call (the first
    // call keeps the step's stream; two calls' streams would meet only some 10^18 steps apart).
    const std::uint64_t stream = 0xD50000000ull + step + call * 0x9E3779B97F4A7C15ull;
    return {seed, stream, base, p, p < 1.f ? T(1) / T(1 - p) : T(0), active};
  }
};

}  // namespace detail

struct dropout {
  static constexpr bool preserves_width = true;
  float p = 0.5f;
  std::uint64_t seed = detail::next_module_seed();

  static void dp_members(auto&, auto&&) {}
  static void dp_settings(auto& self, auto&& f) {
    f("p", self.p);
    f("seed", self.seed);
  }

  template <class X>
  auto forward(const X& x) const {
    DP_CHECK(p >= 0.f && p <= 1.f, value_error, "dp: dropout: p must lie in [0, 1], got ", p);
    auto in = detail::materialize(x);
    using V = typename decltype(in)::value_type;
    // Its scale 1 / (1 - p) is no integer (in an integer type it was a division by zero, even in
    // evaluation mode, where the node is built all the same).
    static_assert(std::is_floating_point_v<V>,
                  "dp: dropout needs floating-point values (it scales the kept ones by 1 / (1 - p)): pass "
                  "dp::cast<float>(x)");
    const bool active = training() && p > 0.f;
    detail::graph* g = nullptr;
    if constexpr (detail::is_var<decltype(in)>::value) {
      g = in.graph();
    }
    auto& eager = detail::eager_random_state();
    const std::uint64_t step = (active && !g) ? eager.step++ : 0;
    const std::uint64_t call = (active && g) ? g->random_calls++ : 0;
    return in * dp::expr{detail::dropout_node<V>{g, seed, step, call, eager.sample_offset, p, active, in.shape(),
                                                 in.device()}};
  }
  template <class X>
  auto operator()(const X& x) const {
    return forward(x);
  }
};

}  // namespace dp::inline DP_ABI::nn

namespace dp::inline DP_ABI::detail {
template <class T>
struct leaf_traits<nn::detail::dropout_node<T>> {
  static constexpr bool is_leaf = true;
  static node_meta meta(const nn::detail::dropout_node<T>& n) { return {n.shape, n.dev, true}; }
  template <class Ctx>
  static leaf_view view(const nn::detail::dropout_node<T>& n, const Ctx&) {
    return {nullptr, 0, n.shape, contiguous_strides(n.shape), 0};
  }
  template <class Ctx>
  static gen_eval<nn::detail::dropout_gen<T>> make(const nn::detail::dropout_node<T>& n, const Ctx&, const index_t* st,
                                                   int rank) {
    gen_eval<nn::detail::dropout_gen<T>> e{};
    e.g = n.gen();
    e.rank = rank;
    for (int d = 0; d < rank; ++d) {
      e.st[d] = st[d];
    }
    e.inner = st[rank - 1];
    return e;
  }
};
}  // namespace dp::inline DP_ABI::detail
