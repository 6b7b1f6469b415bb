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

template <class T>
void print_rec(std::ostream& os, const std::vector<T>& v, const shape& shp, int dim, index_t off, const shape& st,
               const print_style& s, bool summarize, int indent) {
  const index_t n = shp[dim];
  constexpr index_t edge = 3;
  os << '[';
  for (index_t i = 0; i < n; ++i) {
    if (summarize && n > 2 * edge && i == edge) {
      os << (dim + 1 == shp.rank() ? "..., " : "...,\n" + std::string(indent + 1, ' '));
      i = n - edge - 1;
      continue;
    }
    if (dim + 1 == shp.rank()) {
      std::string item = format_value(v[static_cast<std::size_t>(off + i * st[dim])], s);
      os << std::string(std::max<int>(0, s.width - static_cast<int>(item.size())), ' ') << item;
    } else {
      print_rec(os, v, shp, dim + 1, off + i * st[dim], st, s, summarize, indent + 1);
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
  const std::vector<T> v = t.to_vector();
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
    detail::print_rec(os, v, t.shape(), 0, 0, contiguous_strides(t.shape()), s, t.numel() > 1000, 7);
  }
  return os << ", shape=" << t.shape() << ", device=" << t.device() << ')';
}

template <class Node>
std::ostream& operator<<(std::ostream& os, const expr<Node>& e) {
  return os << e.eval();
}

}  // namespace dp::inline DP_ABI
