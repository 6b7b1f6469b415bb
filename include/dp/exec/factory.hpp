// Tensor factories and the tensor members that need an executor (fill, clone, to, item, to_vector).
#pragma once

#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <span>
#include <vector>

#include <dp/config.hpp>
#include <dp/core/tensor.hpp>
#include <dp/core/write_guard.hpp>
#include <dp/exec/assign.hpp>
#include <dp/expr/node.hpp>
#include <dp/expr/operators.hpp>
#include <dp/expr/random.hpp>

namespace dp::inline DP_ABI {
namespace detail {

template <class T>
struct arange_gen {
  using value_type = T;
  T start, step;
  DP_HOST_DEVICE DP_FORCEINLINE T operator()(index_t i) const {
    if constexpr (std::is_integral_v<T>) {
      // Modulo 2^64: exact for every value below stop, where step * i alone may overflow.
      return static_cast<T>(static_cast<std::uint64_t>(start) +
                            static_cast<std::uint64_t>(step) * static_cast<std::uint64_t>(i));
    } else {
      return static_cast<T>(start + step * i);
    }
  }
};

/// Uniform in [lo, hi): element i of stream `stream` under `seed`.
template <class T>
struct uniform_gen {
  using value_type = T;
  std::uint64_t seed, stream;
  T lo, hi;
  DP_HOST_DEVICE DP_FORCEINLINE T operator()(index_t i) const {
    const philox_out r = philox4x32(static_cast<std::uint64_t>(i), stream, seed);
    T u;
    if constexpr (sizeof(T) <= 4) {
      u = static_cast<T>(uniform01f(r.v[0]));
    } else {
      u = static_cast<T>(uniform01d(r.v[0], r.v[1]));
    }
    // lo + (hi - lo) u can round up to hi for u just below 1; that value goes to lo, as PyTorch maps it.
    const T v = lo + (hi - lo) * u;
    return v < hi ? v : lo;
  }
};

template <class T>
struct normal_gen {
  using value_type = T;
  std::uint64_t seed, stream;
  T mean, stddev;
  DP_HOST_DEVICE DP_FORCEINLINE T operator()(index_t i) const {
    const philox_out r = philox4x32(static_cast<std::uint64_t>(i), stream, seed);
    return mean + stddev * static_cast<T>(normal_from_bits(r.v[0], r.v[1], r.v[2]));
  }
};

template <class G>
auto generator(G g, const shape& shp, device d) {
  return expr{generator_node<G>{g, node_meta{shp, d, true}}};
}

}  // namespace detail

/// A tensor of `shp` with every element `value` (a number of another type converted by scalar_as:
/// refused when it would wrap or lose a fraction).
template <class T, scalar S = T>
tensor<T> full(const shape& shp, S value, device d = cpu()) {
  tensor<T> t = empty<T>(shp, d);
  t.fill(value);
  return t;
}
template <class T>
tensor<T> zeros(const shape& shp, device d = cpu()) {
  return full<T>(shp, T(0), d);
}
template <class T>
tensor<T> ones(const shape& shp, device d = cpu()) {
  return full<T>(shp, T(1), d);
}
template <class T>
tensor<T> empty_like(const tensor<T>& t) {
  return empty<T>(t.shape(), t.device());
}
template <class T>
tensor<T> zeros_like(const tensor<T>& t) {
  return zeros<T>(t.shape(), t.device());
}

/// start, start + step, ... below stop (like numpy.arange).
template <class T>
tensor<T> arange(T start, T stop, T step = T(1), device d = cpu()) {
  static_assert(!std::is_same_v<T, bool>, "dp: arange<bool> has no meaning; use an integer or floating type");
  DP_CHECK(step != T(0), value_error, "dp: arange: step must not be 0");
  index_t count = 0;
  if constexpr (std::is_integral_v<T>) {
    // Counted exactly, modulo 2^64 (|stop - start| < 2^64): through a double, 64-bit bounds rounded
    // (too many values, past stop and overflowing, or none).
    using U = std::uint64_t;
    const bool up = step > T(0);
    if (up ? stop > start : stop < start) {
      const U span = up ? U(stop) - U(start) : U(start) - U(stop);
      const U size = up ? U(step) : U(0) - U(step);
      const U n = span / size + (span % size != 0 ? 1 : 0);
      DP_CHECK(n < (U{1} << 62), value_error, "dp: arange: start ", +start, ", stop ", +stop, " and step ", +step,
               " give ", n, " values (expected a count below 2^62)");
      count = static_cast<index_t>(n);
    }
  } else {
    const double n = std::ceil((static_cast<double>(stop) - static_cast<double>(start)) / static_cast<double>(step));
    // An infinite or NaN count (a bound or step that is) or one past 2^62 has no tensor; casting it was undefined.
    DP_CHECK(std::isfinite(n) && n < 0x1p62, value_error, "dp: arange: start ", start, ", stop ", stop, " and step ",
             step, " give ", n, " values (expected finite bounds and a count below 2^62)");
    count = n > 0 ? static_cast<index_t>(n) : 0;
  }
  return tensor<T>(detail::generator(detail::arange_gen<T>{start, step}, {count}, d));
}
/// arange with bounds or a step of other types, converted by scalar_as first (300 as a uint8 bound
/// wrapped to 44 in a conversion at the call).
/// `stop` is exclusive, so for integers it may lie just past T's range (arange<uint8_t>(0, 256));
/// further, values T lacks would be asked for: refused.
template <class T, scalar A, scalar B, scalar C = T>
  requires(!(std::is_same_v<A, T> && std::is_same_v<B, T> && std::is_same_v<C, T>))
tensor<T> arange(A start, B stop, C step = C(1), device d = cpu()) {
  const T first = detail::scalar_as<T>(start), by = detail::scalar_as<T>(step);
  DP_CHECK(by != T(0), value_error, "dp: arange: step must not be 0");
  if constexpr (std::is_integral_v<T> && std::is_integral_v<B>) {
    // A stop just past T's end in the step's direction: the values run to that end, which is one of
    // them when its distance from start is a whole number of steps. Past the other end: no value.
    if (!detail::integer_fits<T>(stop) && (stop > 0) != (by > T(0))) {
      return tensor<T>(detail::generator(detail::arange_gen<T>{first, by}, {0}, d));
    }
    if (!detail::integer_fits<T>(stop) &&
        (by > T(0) ? detail::integer_fits<T>(stop - 1) : detail::integer_fits<T>(stop + 1))) {
      using U = std::uint64_t;
      const T end = by > T(0) ? std::numeric_limits<T>::max() : std::numeric_limits<T>::min();
      const U span = by > T(0) ? U(end) - U(first) : U(first) - U(end), size = by > T(0) ? U(by) : U(0) - U(by);
      const U n = span / size + 1;
      DP_CHECK(n < (U{1} << 62), value_error, "dp: arange: start ", +start, ", stop ", +stop, " and step ", +step,
               " give ", n, " values (expected a count below 2^62)");
      return tensor<T>(detail::generator(detail::arange_gen<T>{first, by}, {static_cast<index_t>(n)}, d));
    }
  }
  return arange<T>(first, detail::scalar_as<T>(stop), by, d);
}
/// 0, 1, ..., n - 1.
template <class T>
tensor<T> arange(index_t n, device d = cpu()) {
  static_assert(!std::is_same_v<T, bool>, "dp: arange<bool> has no meaning; use an integer or floating type");
  // n itself is the count: converted to T first, it wrapped (arange<uint8_t>(256) was empty) or
  // rounded (arange<float>(2^24 + 1) was one short).
  DP_CHECK(n >= 0, value_error, "dp: arange: n is ", n, "; expected a count of 0 or more");
  if constexpr (std::is_integral_v<T>) {
    DP_CHECK(n == 0 || static_cast<std::uint64_t>(n - 1) <= static_cast<std::uint64_t>(std::numeric_limits<T>::max()),
             value_error, "dp: arange: n is ", n, ", but the largest value ", n - 1,
             " does not fit the element type (at most ", +std::numeric_limits<T>::max(), ")");
  }
  return tensor<T>(detail::generator(detail::arange_gen<T>{T(0), T(1)}, {n}, d));
}

/// Uniform values in [lo, hi) from `seed`: the same numbers on every device and for any split.
template <class T>
tensor<T> rand(const shape& shp, device d = cpu(), std::uint64_t seed = 0, T lo = T(0), T hi = T(1)) {
  static_assert(std::is_floating_point_v<T>, "dp: rand<T> needs a floating-point T");
  detail::check_uniform_bounds(lo, hi);
  return tensor<T>(detail::generator(detail::uniform_gen<T>{seed, 0, lo, hi}, shp, d));
}
/// Normal values N(mean, stddev^2) from `seed` (Box-Muller on Philox draws).
template <class T>
tensor<T> randn(const shape& shp, device d = cpu(), std::uint64_t seed = 0, T mean = T(0), T stddev = T(1)) {
  static_assert(std::is_floating_point_v<T>, "dp: randn<T> needs a floating-point T");
  detail::check_normal_parameters(mean, stddev);
  return tensor<T>(detail::generator(detail::normal_gen<T>{seed, 1, mean, stddev}, shp, d));
}

/// A tensor holding a copy of `values` (row-major) with shape `shp` on `d`.
template <class T>
tensor<T> from_span(std::span<const T> values, const shape& shp, device d = cpu()) {
  detail::check_extents(shp, "from_vector");  // before its element count is taken
  DP_CHECK(static_cast<index_t>(values.size()) == shp.numel(), shape_error, "dp: from_vector: ", values.size(),
           " values do not fill shape ", shp, " (", shp.numel(), " elements)");
  tensor<T> t = empty<T>(shp, d);
  detail::copy_bytes(t.data(), d, values.data(), cpu(), values.size() * sizeof(T));
  return t;
}
template <class T>
tensor<T> from_vector(const std::vector<T>& values, const shape& shp, device d = cpu()) {
  if constexpr (std::is_same_v<T, bool>) {  // vector<bool> packs bits
    std::vector<unsigned char> bytes(values.begin(), values.end());
    return tensor<T>(cast<bool>(from_vector<unsigned char>(bytes, shp, d)));
  } else {
    return from_span<T>(std::span<const T>(values), shp, d);
  }
}
/// A 1-D tensor of `values`.
template <class T>
tensor<T> from_vector(const std::vector<T>& values, device d = cpu()) {
  return from_vector<T>(values, {static_cast<index_t>(values.size())}, d);
}

// ------------------------------------------------------------------------------------ tensor members
template <class T>
tensor<T>& tensor<T>::fill(T value) {
  DP_CHECK(defined(), value_error, "dp: fill() needs a defined tensor");
  detail::check_writable(st_.get());
  detail::check_distinct_elements(*this, "fill");
  detail::assign_node(*this, detail::scalar_node<T>{value}, detail::eager_ctx{});
  return *this;
}

template <class T>
tensor<T> tensor<T>::clone() const {
  DP_CHECK(defined(), value_error, "dp: clone() of an undefined tensor");
  tensor<T> r = empty<T>(shape_, dev_);
  detail::assign_node(r, detail::tensor_node<T>{*this}, detail::eager_ctx{});
  return r;
}

template <class T>
tensor<T> tensor<T>::to(dp::device d) const {
  DP_CHECK(defined(), value_error, "dp: to(device) of an undefined tensor");
  if (d == dev_) {
    return *this;
  }
  const tensor<T> src = contiguous();
  tensor<T> r = empty<T>(shape_, d);
  detail::copy_bytes(r.data(), d, src.data(), dev_, static_cast<std::size_t>(numel()) * sizeof(T));
  return r;
}

template <class T>
template <class U>
tensor<U> tensor<T>::to() const {
  if constexpr (std::is_same_v<T, U>) {
    return *this;
  } else {
    return tensor<U>(cast<U>(*this));
  }
}

template <class T>
T tensor<T>::item() const {
  DP_CHECK(defined() && numel() == 1, value_error, "dp: item() needs a tensor with exactly one element, got shape ",
           shape_);
  T v{};
  detail::copy_bytes(&v, cpu(), data(), dev_, sizeof(T));
  return v;
}

template <class T>
std::vector<T> tensor<T>::to_vector() const {
  if (!defined()) {
    return {};
  }
  if constexpr (std::is_same_v<T, bool>) {  // vector<bool> packs bits
    const std::vector<unsigned char> bytes = to<unsigned char>().to_vector();
    return std::vector<bool>(bytes.begin(), bytes.end());
  }
  const tensor<T> src = contiguous();
  std::vector<T> out(static_cast<std::size_t>(numel()));
  if constexpr (!std::is_same_v<T, bool>) {
    detail::copy_bytes(out.data(), cpu(), src.data(), dev_, out.size() * sizeof(T));
  }
  return out;
}

}  // namespace dp::inline DP_ABI
