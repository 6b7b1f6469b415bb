// dp::shape: a tensor's extents (or strides) in a fixed array, so shapes never allocate; NumPy
// broadcasting; static extents for the places where a width is known at compile time.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <initializer_list>
#include <limits>
#include <ostream>
#include <span>
#include <string>

#include <dp/config.hpp>
#include <dp/core/error.hpp>

namespace dp::inline DP_ABI {

/// Up to `max_rank` extents. Also used for strides (in elements).
class shape {
 public:
  constexpr shape() = default;
  constexpr shape(std::initializer_list<index_t> dims) { assign(dims.begin(), dims.end()); }
  explicit constexpr shape(std::span<const index_t> dims) { assign(dims.begin(), dims.end()); }
  template <class It>
  constexpr shape(It first, It last) {
    assign(first, last);
  }

  /// A shape of `rank` dimensions all equal to `value`.
  static constexpr shape filled(int rank, index_t value) {
    shape s;
    if (rank < 0 || rank > max_rank) {
      throw value_error(detail::concat("dp: rank ", rank, " is outside 0..", max_rank));
    }
    s.rank_ = rank;
    for (int i = 0; i < rank; ++i) {
      s.d_[i] = value;
    }
    return s;
  }

  constexpr int rank() const noexcept { return rank_; }
  constexpr int size() const noexcept { return rank_; }
  constexpr bool empty() const noexcept { return rank_ == 0; }
  constexpr index_t& operator[](int i) noexcept { return d_[i]; }
  constexpr index_t operator[](int i) const noexcept { return d_[i]; }
  constexpr index_t* begin() noexcept { return d_.data(); }
  constexpr index_t* end() noexcept { return d_.data() + rank_; }
  constexpr const index_t* begin() const noexcept { return d_.data(); }
  constexpr const index_t* end() const noexcept { return d_.data() + rank_; }
  constexpr const index_t* data() const noexcept { return d_.data(); }
  constexpr index_t back() const noexcept { return d_[rank_ - 1]; }

  /// Product of the extents (1 for a 0-d shape).
  constexpr index_t numel() const noexcept {
    index_t n = 1;
    for (int i = 0; i < rank_; ++i) {
      n *= d_[i];
    }
    return n;
  }

  constexpr void push_back(index_t v) {
    if (rank_ == max_rank) {
      throw value_error(detail::concat("dp: a shape holds at most ", max_rank, " dimensions"));
    }
    d_[rank_++] = v;
  }
  constexpr void insert(int pos, index_t v) {
    // Checked like erase: past the end it left a gap holding 0, and a negative one wrote before d_.
    if (pos < 0 || pos > rank_) {
      throw value_error(
          detail::concat("dp: shape ", *this, " has no position ", pos, " to insert at (expected 0..", rank_, ")"));
    }
    push_back(0);  // throws when the shape already holds max_rank dimensions
    for (int i = rank_ - 1; i > pos; --i) {
      d_[i] = d_[i - 1];
    }
    d_[pos] = v;
  }
  constexpr void erase(int pos) {
    if (pos < 0 || pos >= rank_) {
      throw value_error(detail::concat("dp: shape ", *this, " has no dimension ", pos, " to remove"));
    }
    for (int i = pos; i + 1 < rank_; ++i) {
      d_[i] = d_[i + 1];
    }
    d_[--rank_] = 0;  // a freed slot holds nothing a later push_back or view could mistake for an extent
  }

  friend constexpr bool operator==(const shape& a, const shape& b) noexcept {
    if (a.rank_ != b.rank_) {
      return false;
    }
    for (int i = 0; i < a.rank_; ++i) {
      if (a.d_[i] != b.d_[i]) {
        return false;
      }
    }
    return true;
  }

  friend std::ostream& operator<<(std::ostream& os, const shape& s) {
    os << '{';
    for (int i = 0; i < s.rank_; ++i) {
      os << (i ? ", " : "") << s.d_[i];
    }
    return os << '}';
  }

  std::string str() const { return detail::concat(*this); }

 private:
  template <class It>
  constexpr void assign(It first, It last) {
    for (; first != last; ++first) {
      push_back(static_cast<index_t>(*first));
    }
  }

  std::array<index_t, max_rank> d_{};
  int rank_ = 0;
};

/// Row-major (C order) strides of a shape.
constexpr shape contiguous_strides(const shape& s) {
  shape st = shape::filled(s.rank(), 1);
  index_t acc = 1;
  for (int i = s.rank() - 1; i >= 0; --i) {
    st[i] = acc;
    acc *= s[i];
  }
  return st;
}

namespace detail {
/// a / b rounded up, for a >= 0 and b > 0, without the overflow of (a + b - 1) / b near 2^63.
constexpr index_t ceil_div(index_t a, index_t b) noexcept { return a / b + (a % b != 0 ? 1 : 0); }

/// Checks a shape given for a view (reshape, broadcast_to): every extent non-negative, and their
/// product representable. A product that wraps could equal the tensor's element count while the
/// view's rows lie far past its memory.
DP_NOINLINE inline void check_extents(const shape& s, const char* op) {
  index_t n = 1;
  for (int i = 0; i < s.rank(); ++i) {
    DP_CHECK(s[i] >= 0, shape_error, "dp: ", op, ": extent ", s[i], " in ", s, " is negative");
    DP_CHECK(s[i] == 0 || !__builtin_mul_overflow(n, s[i], &n), shape_error, "dp: ", op, ": shape ", s,
             " holds more elements than a 64-bit index counts (the product of its extents overflows)");
  }
}
}  // namespace detail

/// Resolves a possibly negative axis against a rank, or throws naming the operation. A 0-d tensor
/// takes axis 0 or -1 where the operation has a meaning for it (a reduction, a transpose).
DP_NOINLINE inline int normalize_axis(index_t axis, int rank, const char* op) {
  const int n = std::max(rank, 1);
  const index_t r = axis < 0 ? axis + n : axis;  // 64 bits: an axis past int's range is out of range too
  DP_CHECK(r >= 0 && r < n, value_error, "dp: ", op, ": axis ", axis, " is out of range for a tensor of rank ", rank,
           " (expected -", n, "..", n - 1, ")");
  return static_cast<int>(r);
}

/// Like normalize_axis, for operations that read an existing dimension (size, slice, select, and
/// squeeze of a tensor of rank 1 or more): a 0-d tensor has none, so this is an error, not a read of
/// a dimension that is not there.
DP_NOINLINE inline int existing_axis(index_t axis, int rank, const char* op) {
  DP_CHECK(rank > 0, value_error, "dp: ", op, ": a 0-d tensor has no dimension ", axis,
           " (it has no dimensions at all; its value is read with item())");
  return normalize_axis(axis, rank, op);
}

/// The shape with dimensions start..end merged into one (a 0-d shape becomes {1}), as flatten gives.
inline shape flattened_shape(const shape& s, index_t start, index_t end) {
  if (s.rank() == 0) {  // its one axis is 0 or -1, as for a reduction
    (void)normalize_axis(start, 0, "flatten");
    (void)normalize_axis(end, 0, "flatten");
    return shape{1};
  }
  const int a = normalize_axis(start, s.rank(), "flatten"), e = normalize_axis(end, s.rank(), "flatten");
  DP_CHECK(a <= e, value_error, "dp: flatten: start ", start, " comes after end ", end);
  shape target;
  index_t merged = 1;
  for (int i = 0; i < s.rank(); ++i) {
    if (i < a || i > e) {
      target.push_back(s[i]);
    } else {
      merged *= s[i];
      if (i == e) {
        target.push_back(merged);
      }
    }
  }
  return target;
}

/// NumPy broadcasting of two shapes; throws shape_error printing both shapes and the operation.
DP_NOINLINE inline shape broadcast_shapes(const shape& a, const shape& b, const char* op) {
  const int r = std::max(a.rank(), b.rank());
  shape out = shape::filled(r, 1);
  for (int i = 0; i < r; ++i) {
    const int ia = a.rank() - r + i, ib = b.rank() - r + i;
    const index_t da = ia >= 0 ? a[ia] : 1, db = ib >= 0 ? b[ib] : 1;
    if (da == db || db == 1) {
      out[i] = da;
    } else if (da == 1) {
      out[i] = db;
    } else {
      throw shape_error(detail::concat("dp: ", op, ": shapes ", a, " and ", b,
                                       " cannot be broadcast together (dimension ", i, ": ", da, " vs ", db, ")"));
    }
  }
  // Views broadcast without memory: {2^32, 1} + {1, 2^32} counted 0 elements (a sum of 0).
  index_t n = 1;
  for (int i = 0; i < r; ++i) {
    DP_CHECK(out[i] == 0 || !__builtin_mul_overflow(n, out[i], &n), shape_error, "dp: ", op, ": shapes ", a, " and ", b,
             " broadcast to ", out, ", whose non-zero extents multiply past what a 64-bit index counts");
  }
  return out;
}

/// True when `from` broadcasts to exactly `to` (NumPy rules, `to` fixed).
constexpr bool broadcastable_to(const shape& from, const shape& to) {
  if (from.rank() > to.rank()) {
    return false;
  }
  for (int i = 0; i < from.rank(); ++i) {
    const index_t f = from[i], t = to[to.rank() - from.rank() + i];
    if (f != t && f != 1) {
      return false;
    }
  }
  return true;
}

/// Marks a dimension whose extent is known only at run time.
inline constexpr index_t dyn = -1;

/// Compile-time extents: `dp::extents<dp::dyn, 784>` is a rank-2 shape whose second extent is 784.
template <index_t... E>
struct extents {
  static constexpr int rank = sizeof...(E);
  static constexpr std::array<index_t, sizeof...(E)> values{E...};
  static_assert(rank <= max_rank, "dp: extents<...> has more dimensions than dp::max_rank");
  static_assert(((E == dyn || E >= 0) && ...), "dp: an extent is dp::dyn or a non-negative size");

  /// True when the run-time shape agrees with every static extent.
  static constexpr bool matches(const shape& s) {
    if (s.rank() != rank) {
      return false;
    }
    for (int i = 0; i < rank; ++i) {
      if (values[i] != dyn && values[i] != s[i]) {
        return false;
      }
    }
    return true;
  }

  static std::string str() {
    std::string r = "extents<";
    for (int i = 0; i < rank; ++i) {
      r += (i ? ", " : "") + (values[i] == dyn ? std::string("dyn") : std::to_string(values[i]));
    }
    return r + ">";
  }
};

/// The extents of a tensor whose rank and sizes are all run-time values.
struct dynamic_extents {};

}  // namespace dp::inline DP_ABI
