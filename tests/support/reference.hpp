// Independent float64 references for the tests: values are read straight from memory through the
// tensor's strides (never through dp's own copy kernels), and expected results are computed with
// plain loops over coordinates.
#pragma once

#include <cmath>
#include <cstdint>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include <dp/dp.hpp>

namespace dp_test {

/// A float64 array with a shape (row-major).
struct ref {
  dp::shape shape;
  std::vector<double> v;
  double at(const std::vector<dp::index_t>& c) const {
    dp::index_t off = 0;
    for (int i = 0; i < shape.rank(); ++i) {
      off = off * shape[i] + c[i];
    }
    return v[static_cast<std::size_t>(off)];
  }
};

/// Calls fn(coord) for every coordinate of `s` in row-major order.
inline void for_each_coord(const dp::shape& s, const std::function<void(const std::vector<dp::index_t>&)>& fn) {
  if (s.numel() == 0) {
    return;
  }
  std::vector<dp::index_t> c(static_cast<std::size_t>(s.rank()), 0);
  for (;;) {
    fn(c);
    int d = s.rank() - 1;
    for (; d >= 0; --d) {
      if (++c[d] < s[d]) {
        break;
      }
      c[d] = 0;
    }
    if (d < 0) {
      return;
    }
  }
}

/// The values of a host tensor, read through its strides.
template <class T>
ref host_values(const dp::tensor<T>& t) {
  ref r{t.shape(), {}};
  const T* p = t.data();
  for_each_coord(t.shape(), [&](const std::vector<dp::index_t>& c) {
    dp::index_t off = 0;
    for (int i = 0; i < t.rank(); ++i) {
      off += c[i] * t.strides()[i];
    }
    r.v.push_back(static_cast<double>(p[off]));
  });
  return r;
}

/// Value of `a` at coordinate `c` of a broadcast shape `out`.
inline double broadcast_at(const ref& a, const dp::shape& out, const std::vector<dp::index_t>& c) {
  dp::index_t off = 0;
  for (int i = 0; i < a.shape.rank(); ++i) {
    const int j = out.rank() - a.shape.rank() + i;
    off = off * a.shape[i] + (a.shape[i] == 1 ? 0 : c[j]);
  }
  return a.v[static_cast<std::size_t>(off)];
}

inline dp::shape ref_broadcast(const dp::shape& a, const dp::shape& b) {
  const int r = std::max(a.rank(), b.rank());
  dp::shape out = dp::shape::filled(r, 1);
  for (int i = 0; i < r; ++i) {
    const int ia = a.rank() - r + i, ib = b.rank() - r + i;
    const dp::index_t da = ia >= 0 ? a[ia] : 1, db = ib >= 0 ? b[ib] : 1;
    out[i] = da == 1 ? db : da;
  }
  return out;
}

inline ref ref_map(const ref& a, const std::function<double(double)>& f) {
  ref r{a.shape, {}};
  for (double x : a.v) {
    r.v.push_back(f(x));
  }
  return r;
}

inline ref ref_zip(const ref& a, const ref& b, const std::function<double(double, double)>& f) {
  ref r{ref_broadcast(a.shape, b.shape), {}};
  for_each_coord(r.shape, [&](const std::vector<dp::index_t>& c) {
    r.v.push_back(f(broadcast_at(a, r.shape, c), broadcast_at(b, r.shape, c)));
  });
  return r;
}

/// Checks every value of `got` against `want` within abs + rel * |want| (NaN matches NaN).
template <class T>
void check_close(const dp::tensor<T>& got, const ref& want, double rel = 1e-6, double abs = 1e-6) {
  REQUIRE(got.shape() == want.shape);
  const ref g = host_values(got);
  int bad = 0;
  for (std::size_t i = 0; i < want.v.size(); ++i) {
    const double a = g.v[i], b = want.v[i];
    const bool ok =
        (std::isnan(a) && std::isnan(b)) || (std::isinf(b) && a == b) || std::fabs(a - b) <= abs + rel * std::fabs(b);
    if (!ok && bad++ < 5) {
      FAIL_CHECK("element " << i << " of shape " << want.shape << ": got " << a << ", want " << b);
    }
  }
  CHECK(bad == 0);
}

/// A deterministic source of random shapes and tensors, including empty tensors, size-1
/// dimensions and non-contiguous views.
class generator {
 public:
  explicit generator(std::uint64_t seed) : rng_(seed) {}

  int pick(int n) { return std::uniform_int_distribution<int>(0, n - 1)(rng_); }
  double uniform(double lo, double hi) { return std::uniform_real_distribution<double>(lo, hi)(rng_); }

  dp::shape random_shape(int max_rank = 4, bool allow_empty = true) {
    static constexpr dp::index_t sizes[] = {1, 2, 3, 5, 7, 16, 33};
    dp::shape s;
    const int r = pick(max_rank + 1);
    for (int i = 0; i < r; ++i) {
      s.push_back(allow_empty && pick(12) == 0 ? 0 : sizes[pick(7)]);
    }
    return s;
  }

  /// A shape that broadcasts with `s`: some dimensions set to 1, some leading ones dropped.
  dp::shape broadcast_partner(const dp::shape& s) {
    dp::shape o;
    const int drop = s.rank() ? pick(s.rank() + 1) : 0;
    for (int i = drop; i < s.rank(); ++i) {
      o.push_back(pick(3) == 0 ? 1 : s[i]);
    }
    return o;
  }

  /// A tensor of shape `s` with values in [lo, hi), sometimes a non-contiguous view.
  template <class T>
  dp::tensor<T> random_tensor(const dp::shape& s, double lo = -2, double hi = 2) {
    const int kind = s.rank() >= 2 ? pick(3) : (s.rank() == 1 ? pick(2) : 0);
    auto fill = [&](const dp::shape& shp) {
      std::vector<T> v(static_cast<std::size_t>(shp.numel()));
      for (auto& x : v) {
        x = static_cast<T>(uniform(lo, hi));
      }
      return dp::from_vector<T>(v, shp);
    };
    if (kind == 1) {  // every other element along the last dimension
      dp::shape big = s;
      big[s.rank() - 1] = s[s.rank() - 1] * 2;
      return fill(big).slice(s.rank() - 1, 0, big[s.rank() - 1], 2);
    }
    if (kind == 2) {  // a transposed view
      dp::shape t = s;
      std::swap(t[0], t[s.rank() - 1]);
      return fill(t).transpose(0, s.rank() - 1);
    }
    return fill(s);
  }

 private:
  std::mt19937_64 rng_;
};

}  // namespace dp_test
