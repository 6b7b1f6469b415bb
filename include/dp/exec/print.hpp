// Printing tensors and expressions, in the layout PyTorch users know:
//   tensor([[ 1.0000,  2.0000],
//           [ 3.0000,  4.0000]], shape={2, 2}, device=cpu:0)
// Large tensors show their first and last three entries along each dimension.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <ostream>
#include <string>
#include <type_traits>
#include <vector>

#include <dp/core/tensor.hpp>
#include <dp/exec/factory.hpp>

namespace dp::inline DP_ABI {
namespace detail {

struct print_style {
  bool scientific = false;
  int width = 1;
};

template <class T>
std::string format_value(T v, const print_style& s) {
  char buf[64];
  if constexpr (std::is_same_v<T, bool>) {
    std::snprintf(buf, sizeof buf, "%s", v ? "true" : "false");
  } else if constexpr (std::is_floating_point_v<T>) {
    if (std::isnan(v)) {
      return "nan";  // as PyTorch prints it (glibc writes "-nan" for a NaN with its sign bit set, as 0/0 gives)
    }
    std::snprintf(buf, sizeof buf, s.scientific ? "%.4e" : "%.4f", static_cast<double>(v));
  } else if constexpr (std::is_signed_v<T>) {
    std::snprintf(buf, sizeof buf, "%lld", static_cast<long long>(v));
  } else {
    std::snprintf(buf, sizeof buf, "%llu", static_cast<unsigned long long>(v));
  }
  return buf;
}

/// Entries shown at each end of a dimension of a summarised tensor.
inline constexpr index_t print_edge = 3;

/// What a summarised tensor shows (the first and last print_edge entries along each longer
/// dimension), copied out alone: a broadcast view of 2^40 elements prints without holding them.
template <class T, class E>
tensor<T> shown_entries(const tensor<T, E>& t) {
  shape kept = t.shape();
  int longer[max_rank] = {};
  int k = 0;
  for (int d = 0; d < kept.rank(); ++d) {
    if (kept[d] > 2 * print_edge) {
      kept[d] = 2 * print_edge;
      longer[k++] = d;
    }
  }
  tensor<T> out = empty<T>(kept, t.device());
  for (unsigned mask = 0; mask < (1u << k); ++mask) {  // each corner: the head or the tail of each longer one
    tensor<T> to = out;
    tensor<T> from = t;
    for (int j = 0; j < k; ++j) {
      const int d = longer[j];
      const bool tail = (mask >> j & 1u) != 0;
      to = to.slice(d, tail ? print_edge : 0, tail ? 2 * print_edge : print_edge);
      from = from.slice(d, tail ? t.shape()[d] - print_edge : 0, tail ? t.shape()[d] : print_edge);
    }
    to.assign(from);
  }
  return out;
}

/// Prints dimension `dim` of a tensor of shape `shp` whose shown entries `v` lie at strides `st`
/// (all of them, or with `summarize` those shown_entries kept).
template <class T>
void print_rec(std::ostream& os, const std::vector<T>& v, const shape& shp, int dim, index_t off, const shape& st,
               const print_style& s, bool summarize, int indent) {
  const index_t n = shp[dim];
  constexpr index_t edge = print_edge;
  const bool cut = summarize && n > 2 * edge;
  os << '[';
  for (index_t i = 0; i < n; ++i) {
    if (cut && i == edge) {
      os << (dim + 1 == shp.rank() ? "..., " : "...,\n" + std::string(indent + 1, ' '));
      i = n - edge - 1;
      continue;
    }
    const index_t at = off + (cut && i >= edge ? i - (n - 2 * edge) : i) * st[dim];
    if (dim + 1 == shp.rank()) {
      std::string item = format_value(v[static_cast<std::size_t>(at)], s);
      os << std::string(std::max<int>(0, s.width - static_cast<int>(item.size())), ' ') << item;
    } else {
      print_rec(os, v, shp, dim + 1, at, st, s, summarize, indent + 1);
    }
    if (i + 1 < n) {
      os << (dim + 1 == shp.rank() ? ", "
                                   : ",\n" + std::string(shp.rank() - dim - 2, '\n') + std::string(indent + 1, ' '));
    }
  }
  os << ']';
}

}  // namespace detail

template <class T, class E>
std::ostream& operator<<(std::ostream& os, const tensor<T, E>& t) {
  if (!t.defined()) {
    return os << "tensor(undefined)";
  }
  if (t.numel() == 0) {  // not one "[]" per row of a {n, 0} tensor
    return os << "tensor([], shape=" << t.shape() << ", device=" << t.device() << ')';
  }
  const bool summarize = t.numel() > 1000;
  const tensor<T> shown = summarize ? detail::shown_entries(t) : tensor<T>(t);
  const std::vector<T> v = shown.to_vector();
  detail::print_style s;
  if constexpr (std::is_floating_point_v<T>) {
    double big = 0, small = HUGE_VAL;
    for (T x : v) {
      const double a = std::fabs(static_cast<double>(x));
      if (std::isfinite(a)) {
        big = std::max(big, a);
        if (a > 0) {
          small = std::min(small, a);
        }
      }
    }
    s.scientific = big >= 1e5 || (small < 1e-4 && small != HUGE_VAL);
  }
  for (T x : v) {
    s.width = std::max<int>(s.width, static_cast<int>(detail::format_value(x, s).size()));
  }
  os << "tensor(";
  if (t.rank() == 0) {
    os << detail::format_value(v[0], s);
  } else {
    detail::print_rec(os, v, t.shape(), 0, 0, contiguous_strides(shown.shape()), s, summarize, 7);
  }
  return os << ", shape=" << t.shape() << ", device=" << t.device() << ')';
}

template <class Node>
std::ostream& operator<<(std::ostream& os, const expr<Node>& e) {
  return os << e.eval();
}

}  // namespace dp::inline DP_ABI
