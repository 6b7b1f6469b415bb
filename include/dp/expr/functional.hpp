// Element functors used by expression nodes, on the host and the GPU. Each differentiable functor
// also knows its derivative, so backward passes are built from the same functors and fuse the same
// way forward passes do: unary `grad(x, g)` is g * f'(x); binary `grad_a(a, b, g)` and `grad_b`.
#pragma once

#include <atomic>
#include <cstdint>
#include <limits>
#include <type_traits>

#include <dp/config.hpp>
#include <dp/core/error.hpp>
#include <dp/core/faults.hpp>
#include <dp/core/operand.hpp>
#include <dp/expr/math.hpp>

namespace dp::inline DP_ABI::detail {

// ---------------------------------------------------------------- arithmetic
/// Integers wrap modulo 2^bits, as PyTorch's do: the arithmetic runs in an unsigned type of at least
/// int's width (signed overflow is undefined in C++, and so is uint16 * uint16, promoted to int).
template <class T>
inline constexpr bool wraps_v = std::is_integral_v<T> && !std::is_same_v<T, bool>;
template <class T>
using wrap_t = std::make_unsigned_t<std::common_type_t<T, unsigned>>;
template <class T, class F>
DP_HOST_DEVICE DP_FORCEINLINE T wrapping(T a, T b, F f) {
  if constexpr (wraps_v<T>) {
    return static_cast<T>(f(static_cast<wrap_t<T>>(a), static_cast<wrap_t<T>>(b)));
  } else {
    return f(a, b);
  }
}
struct plus_fn {
  template <class T>
  DP_HOST_DEVICE DP_FORCEINLINE T operator()(T a, T b) const {
    return a + b;
  }
};
struct minus_fn {
  template <class T>
  DP_HOST_DEVICE DP_FORCEINLINE T operator()(T a, T b) const {
    return a - b;
  }
};
struct times_fn {
  template <class T>
  DP_HOST_DEVICE DP_FORCEINLINE T operator()(T a, T b) const {
    return a * b;
  }
};

struct add_op {
  static constexpr const char* name = "add (+)";
  template <class T>
  DP_HOST_DEVICE DP_FORCEINLINE T operator()(T a, T b) const {
    return wrapping(a, b, plus_fn{});
  }
  template <class T>
  DP_HOST_DEVICE DP_FORCEINLINE T grad_a(T, T, T g) const {
    return g;
  }
  template <class T>
  DP_HOST_DEVICE DP_FORCEINLINE T grad_b(T, T, T g) const {
    return g;
  }
};
struct sub_op {
  static constexpr const char* name = "subtract (-)";
  template <class T>
  DP_HOST_DEVICE DP_FORCEINLINE T operator()(T a, T b) const {
    return wrapping(a, b, minus_fn{});
  }
  template <class T>
  DP_HOST_DEVICE DP_FORCEINLINE T grad_a(T, T, T g) const {
    return g;
  }
  template <class T>
  DP_HOST_DEVICE DP_FORCEINLINE T grad_b(T, T, T g) const {
    return -g;
  }
};
struct mul_op {
  static constexpr const char* name = "multiply (*)";
  template <class T>
  DP_HOST_DEVICE DP_FORCEINLINE T operator()(T a, T b) const {
    return wrapping(a, b, times_fn{});
  }
  template <class T>
  DP_HOST_DEVICE DP_FORCEINLINE T grad_a(T, T b, T g) const {
    return g * b;
  }
  template <class T>
  DP_HOST_DEVICE DP_FORCEINLINE T grad_b(T a, T, T g) const {
    return g * a;
  }
};
/// Throws, once, when a host pass this thread ran met a fault (core/faults.hpp; its result there is 0).
inline void check_expression_faults() {
  std::atomic<std::int64_t>& word = own_fault_word();
  if (word.load(std::memory_order_relaxed) != 0) [[unlikely]] {
    raise<value_error>("dp: ", fault_message(word.exchange(0)));
  }
}

/// Flags `f` where the element's result is undefined: in `status`, the kernel's device's word, on a
/// GPU (when the node was built there); on the host, in this thread's fault_word.
DP_HOST_DEVICE DP_FORCEINLINE void flag_fault([[maybe_unused]] std::int64_t* status, fault f) {
#if defined(__CUDA_ARCH__)
  if (status != nullptr) {
    *status = static_cast<std::int64_t>(f);  // every thread that meets it stores the same value
  }
#else
  std::atomic<std::int64_t>& word = *fault_word();
  if (word.load(std::memory_order_relaxed) == 0) {  // many faulting elements: one writer, not all
    word.store(static_cast<std::int64_t>(f), std::memory_order_relaxed);
  }
#endif
}

struct div_op {
  static constexpr const char* name = "divide (/)";
  // Where a kernel flags a division by zero: its device's status word (core/device_status.hpp), set
  // when an integer division node is built on a GPU; null on the host and for floating point.
  std::int64_t* device_status = nullptr;
  template <class T>
  static constexpr bool may_fault = std::is_integral_v<T>;
  template <class T>
  DP_HOST_DEVICE DP_FORCEINLINE T operator()(T a, T b) const {
    if constexpr (std::is_integral_v<T>) {
      if (b == T(0)) {
        flag_fault(device_status, fault::integer_division_by_zero);
        return T(0);
      }
      if constexpr (std::is_signed_v<T>) {
        if (b == T(-1)) {  // INT_MIN / -1 overflows (a trap on x86): it wraps, as in PyTorch
          using U = std::make_unsigned_t<T>;
          return static_cast<T>(U(0) - static_cast<U>(a));
        }
      }
    }
    return a / b;
  }
  template <class T>
  DP_HOST_DEVICE DP_FORCEINLINE T grad_a(T, T b, T g) const {
    return g / b;
  }
  template <class T>
  DP_HOST_DEVICE DP_FORCEINLINE T grad_b(T a, T b, T g) const {
    return -g * a / (b * b);
  }
};
struct pow_op {
  static constexpr const char* name = "pow";
  template <class T>
  DP_HOST_DEVICE DP_FORCEINLINE T operator()(T a, T b) const {
    return math::pow(a, b);
  }
  template <class T>
  DP_HOST_DEVICE DP_FORCEINLINE T grad_a(T a, T b, T g) const {
    return b == T(0) ? T(0) : g * b * math::pow(a, b - T(1));
  }
  /// PyTorch's: 0 where a is 0 and b >= 0, else g a^b log(a), NaN for a < 0 (the power of a
  /// negative base has no derivative in its exponent) and -inf for 0 to a negative power.
  template <class T>
  DP_HOST_DEVICE DP_FORCEINLINE T grad_b(T a, T b, T g) const {
    return a == T(0) && b >= T(0) ? T(0) : g * math::pow(a, b) * math::log(a);
  }
};
// Ties split the gradient evenly, as PyTorch does. PyTorch's formula is kept to the letter, NaN
// included: the operand that loses gets 0, a tie g / 2, otherwise g, so both operands of a NaN
// comparison get g (where(a == b, g / 2, g).masked_fill_(a < b, 0) for maximum's a).
struct maximum_op {
  static constexpr const char* name = "maximum";
  template <class T>
  DP_HOST_DEVICE DP_FORCEINLINE T operator()(T a, T b) const {
    return (a > b) | (a != a) ? a : b;  // NaN propagates; `|` keeps the loop branch-free
  }
  template <class T>
  DP_HOST_DEVICE DP_FORCEINLINE T grad_a(T a, T b, T g) const {
    return a < b ? T(0) : (a == b ? g / T(2) : g);
  }
  template <class T>
  DP_HOST_DEVICE DP_FORCEINLINE T grad_b(T a, T b, T g) const {
    return b < a ? T(0) : (a == b ? g / T(2) : g);
  }
};
struct minimum_op {
  static constexpr const char* name = "minimum";
  template <class T>
  DP_HOST_DEVICE DP_FORCEINLINE T operator()(T a, T b) const {
    return (a < b) | (a != a) ? a : b;
  }
  template <class T>
  DP_HOST_DEVICE DP_FORCEINLINE T grad_a(T a, T b, T g) const {
    return a > b ? T(0) : (a == b ? g / T(2) : g);
  }
  template <class T>
  DP_HOST_DEVICE DP_FORCEINLINE T grad_b(T a, T b, T g) const {
    return b > a ? T(0) : (a == b ? g / T(2) : g);
  }
};

// ---------------------------------------------------------------- comparisons and logic (no gradient)
#define DP_DETAIL_PREDICATE(NAME, TEXT, EXPR)                       \
  struct NAME {                                                     \
    static constexpr const char* name = TEXT;                       \
    static constexpr bool differentiable = false;                   \
    template <class T>                                              \
    DP_HOST_DEVICE DP_FORCEINLINE bool operator()(T a, T b) const { \
      return EXPR;                                                  \
    }                                                               \
  };
DP_DETAIL_PREDICATE(less_op, "less (<)", a < b)
DP_DETAIL_PREDICATE(less_equal_op, "less_equal (<=)", a <= b)
DP_DETAIL_PREDICATE(greater_op, "greater (>)", a > b)
DP_DETAIL_PREDICATE(greater_equal_op, "greater_equal (>=)", a >= b)
DP_DETAIL_PREDICATE(equal_op, "equal (==)", a == b)
DP_DETAIL_PREDICATE(not_equal_op, "not_equal (!=)", a != b)
DP_DETAIL_PREDICATE(logical_and_op, "logical_and (&&)", static_cast<bool>(a) && static_cast<bool>(b))
DP_DETAIL_PREDICATE(logical_or_op, "logical_or (||)", static_cast<bool>(a) || static_cast<bool>(b))
#undef DP_DETAIL_PREDICATE

struct logical_not_op {
  static constexpr const char* name = "logical_not (!)";
  static constexpr bool differentiable = false;
  template <class T>
  DP_HOST_DEVICE DP_FORCEINLINE bool operator()(T a) const {
    return !static_cast<bool>(a);
  }
};

template <class Op>
constexpr bool differentiable() {
  if constexpr (requires { Op::differentiable; }) {
    return Op::differentiable;
  } else {
    return true;
  }
}
template <class Op>
inline constexpr bool differentiable_v = differentiable<Op>();

// ---------------------------------------------------------------- unary math
struct neg_op {
  static constexpr const char* name = "negate";
  template <class T>
  DP_HOST_DEVICE DP_FORCEINLINE T operator()(T x) const {
    return wrapping(T(0), x, minus_fn{});
  }
  template <class T>
  DP_HOST_DEVICE DP_FORCEINLINE T grad(T, T g) const {
    return -g;
  }
};
struct exp_op {
  static constexpr const char* name = "exp";
  template <class T>
  DP_HOST_DEVICE DP_FORCEINLINE T operator()(T x) const {
    return math::exp(x);
  }
  template <class T>
  DP_HOST_DEVICE DP_FORCEINLINE T grad(T x, T g) const {
    return g * math::exp(x);
  }
};
struct log_op {
  static constexpr const char* name = "log";
  template <class T>
  DP_HOST_DEVICE DP_FORCEINLINE T operator()(T x) const {
    return math::log(x);
  }
  template <class T>
  DP_HOST_DEVICE DP_FORCEINLINE T grad(T x, T g) const {
    return g / x;
  }
};
struct sin_op {
  static constexpr const char* name = "sin";
  template <class T>
  DP_HOST_DEVICE DP_FORCEINLINE T operator()(T x) const {
    return math::sin(x);
  }
  template <class T>
  DP_HOST_DEVICE DP_FORCEINLINE T grad(T x, T g) const {
    return g * math::cos(x);
  }
};
struct cos_op {
  static constexpr const char* name = "cos";
  template <class T>
  DP_HOST_DEVICE DP_FORCEINLINE T operator()(T x) const {
    return math::cos(x);
  }
  template <class T>
  DP_HOST_DEVICE DP_FORCEINLINE T grad(T x, T g) const {
    return -g * math::sin(x);
  }
};
struct tanh_op {
  static constexpr const char* name = "tanh";
  template <class T>
  DP_HOST_DEVICE DP_FORCEINLINE T operator()(T x) const {
    return math::tanh(x);
  }
  template <class T>
  DP_HOST_DEVICE DP_FORCEINLINE T grad(T x, T g) const {
    const T t = math::tanh(x);
    return g * (T(1) - t * t);
  }
};
struct sigmoid_op {
  static constexpr const char* name = "sigmoid";
  template <class T>
  DP_HOST_DEVICE DP_FORCEINLINE T operator()(T x) const {
    return math::sigmoid(x);
  }
  template <class T>
  DP_HOST_DEVICE DP_FORCEINLINE T grad(T x, T g) const {
    const T s = math::sigmoid(x);
    return g * s * (T(1) - s);
  }
};
struct sqrt_op {
  static constexpr const char* name = "sqrt";
  template <class T>
  DP_HOST_DEVICE DP_FORCEINLINE T operator()(T x) const {
    return math::sqrt(x);
  }
  template <class T>
  DP_HOST_DEVICE DP_FORCEINLINE T grad(T x, T g) const {
    return g / (T(2) * math::sqrt(x));
  }
};
struct rsqrt_op {
  static constexpr const char* name = "rsqrt";
  template <class T>
  DP_HOST_DEVICE DP_FORCEINLINE T operator()(T x) const {
    return math::rsqrt(x);
  }
  template <class T>
  DP_HOST_DEVICE DP_FORCEINLINE T grad(T x, T g) const {
    const T r = math::rsqrt(x);
    return -g * r * r * r / T(2);
  }
};
struct abs_op {
  static constexpr const char* name = "abs";
  template <class T>
  DP_HOST_DEVICE DP_FORCEINLINE T operator()(T x) const {
    if constexpr (std::is_floating_point_v<T>) {
      return x < T(0) ? -x : (x == T(0) ? T(0) : x);  // |-0.0| is +0.0, as fabs and PyTorch give
    } else {
      return x < T(0) ? wrapping(T(0), x, minus_fn{}) : x;
    }
  }
  template <class T>
  DP_HOST_DEVICE DP_FORCEINLINE T grad(T x, T g) const {
    return x > T(0) ? g : (x < T(0) ? -g : T(0));
  }
};
struct square_op {
  static constexpr const char* name = "square";
  template <class T>
  DP_HOST_DEVICE DP_FORCEINLINE T operator()(T x) const {
    return wrapping(x, x, times_fn{});
  }
  template <class T>
  DP_HOST_DEVICE DP_FORCEINLINE T grad(T x, T g) const {
    return T(2) * x * g;
  }
};
struct relu_op {
  static constexpr const char* name = "relu";
  template <class T>
  DP_HOST_DEVICE DP_FORCEINLINE T operator()(T x) const {
    return x < T(0) ? T(0) : x;  // NaN stays NaN, as in PyTorch (x > 0 ? x : 0 made it 0)
  }
  template <class T>
  DP_HOST_DEVICE DP_FORCEINLINE T grad(T x, T g) const {
    return x <= T(0) ? T(0) : g;  // NaN passes g on, as PyTorch's threshold_backward does
  }
};
/// GELU with the exact erf form (PyTorch's default, approximate='none').
struct gelu_op {
  static constexpr const char* name = "gelu";
  template <class T>
  DP_HOST_DEVICE DP_FORCEINLINE T operator()(T x) const {
    return T(0.5) * x * (T(1) + math::erf(x * T(0.7071067811865476)));
  }
  template <class T>
  DP_HOST_DEVICE DP_FORCEINLINE T grad(T x, T g) const {
    const T cdf = T(0.5) * (T(1) + math::erf(x * T(0.7071067811865476)));
    const T pdf = math::exp(T(-0.5) * x * x) * T(0.3989422804014327);
    return g * (cdf + x * pdf);
  }
};
/// clamp to [lo, hi]; the gradient passes where lo <= x <= hi (PyTorch's rule).
template <class S>
struct clamp_op {
  static constexpr const char* name = "clamp";
  S lo, hi;
  template <class T>
  DP_HOST_DEVICE DP_FORCEINLINE T operator()(T x) const {
    const T l = static_cast<T>(lo), h = static_cast<T>(hi);
    return x < l ? l : (x > h ? h : x);
  }
  template <class T>
  DP_HOST_DEVICE DP_FORCEINLINE T grad(T x, T g) const {
    return (x >= static_cast<T>(lo) && x <= static_cast<T>(hi)) ? g : T(0);
  }
};
template <class U>
struct cast_op {
  static constexpr const char* name = "cast";
  // A float outside U's range (NaN and infinities included) has no U: the cast would be undefined.
  std::int64_t* device_status = nullptr;
  template <class T>
  static constexpr bool may_fault = std::is_integral_v<U> && !std::is_same_v<U, bool> && std::is_floating_point_v<T>;
  template <class T>
  DP_HOST_DEVICE DP_FORCEINLINE U operator()(T x) const {
    if constexpr (may_fault<T>) {
      // Valid when the truncated value lies in [min, max]: x > min - 1 (or x == min, where min - 1
      // rounds to min) and x < max + 1, a power of two every float type holds exactly.
      constexpr T lo = static_cast<T>(std::numeric_limits<U>::min());
      constexpr T hi = static_cast<T>(std::numeric_limits<U>::max() / 2 + 1) * T(2);
      if (!((x >= lo || x > lo - T(1)) && x < hi)) [[unlikely]] {
        flag_fault(device_status, fault::integer_cast_out_of_range);
        return U(0);
      }
    }
    return static_cast<U>(x);
  }
  template <class T>
  DP_HOST_DEVICE DP_FORCEINLINE T grad(T, T g) const {
    return g;
  }
};
/// An integer stored by assignment into an integer type that does not hold every value of its own
/// (narrower, or of the other signedness): a value outside it would wrap silently, so it is a fault,
/// as a float out of range is (and as a scalar fill that would wrap is refused). dp::cast, asked for
/// explicitly, wraps as C++ and PyTorch do.
template <class U>
struct narrow_op {
  static constexpr const char* name = "narrow";
  std::int64_t* device_status = nullptr;
  /// Some T is outside U's range: U is narrower, or of the other signedness (integer_fits is true
  /// for anything but two integer types, bool aside).
  template <class T>
  static constexpr bool may_fault =
      !(integer_fits<U>(std::numeric_limits<T>::lowest()) && integer_fits<U>(std::numeric_limits<T>::max()));
  template <class T>
  DP_HOST_DEVICE DP_FORCEINLINE U operator()(T x) const {
    if constexpr (may_fault<T>) {
      if (!integer_fits<U>(x)) [[unlikely]] {
        flag_fault(device_status, fault::integer_narrowed_out_of_range);
        return U(0);
      }
    }
    return static_cast<U>(x);
  }
};

}  // namespace dp::inline DP_ABI::detail
