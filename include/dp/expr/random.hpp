// Counter-based random numbers (Philox4x32-10): value i of a stream is a pure function of
// (seed, stream, i), so the CPU and the GPU, and any split of a tensor across devices, draw the
// same numbers, and nothing has to be stored or advanced between calls.
#pragma once

#include <array>
#include <cmath>
#include <cstdint>

#include <dp/config.hpp>
#include <dp/core/error.hpp>
#include <dp/expr/math.hpp>

namespace dp::inline DP_ABI::detail {

struct philox_out {
  std::uint32_t v[4];
};

DP_HOST_DEVICE DP_FORCEINLINE philox_out philox4x32(std::uint64_t counter, std::uint64_t stream, std::uint64_t seed) {
  std::uint32_t c0 = static_cast<std::uint32_t>(counter), c1 = static_cast<std::uint32_t>(counter >> 32);
  std::uint32_t c2 = static_cast<std::uint32_t>(stream), c3 = static_cast<std::uint32_t>(stream >> 32);
  std::uint32_t k0 = static_cast<std::uint32_t>(seed), k1 = static_cast<std::uint32_t>(seed >> 32);
  for (int round = 0; round < 10; ++round) {
    const std::uint64_t p0 = std::uint64_t{0xD2511F53u} * c0, p1 = std::uint64_t{0xCD9E8D57u} * c2;
    const std::uint32_t h0 = static_cast<std::uint32_t>(p0 >> 32), l0 = static_cast<std::uint32_t>(p0);
    const std::uint32_t h1 = static_cast<std::uint32_t>(p1 >> 32), l1 = static_cast<std::uint32_t>(p1);
    c0 = h1 ^ c1 ^ k0;
    c1 = l1;
    c2 = h0 ^ c3 ^ k1;
    c3 = l0;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  return {{c0, c1, c2, c3}};
}

/// Uniform in [0, 1) with 24 random bits (every float step of [0,1) at that resolution is exact).
DP_HOST_DEVICE DP_FORCEINLINE float uniform01f(std::uint32_t u) { return static_cast<float>(u >> 8) * 0x1.0p-24f; }
/// Uniform in [0, 1) with 53 random bits.
DP_HOST_DEVICE DP_FORCEINLINE double uniform01d(std::uint32_t a, std::uint32_t b) {
  return static_cast<double>((static_cast<std::uint64_t>(a >> 5) << 26) | (b >> 6)) * 0x1.0p-53;
}

// Products and sums that no compiler may fuse into an fma, so the normal transform below rounds
// identically on the host and on the GPU.
DP_HOST_DEVICE DP_FORCEINLINE double rn_mul(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __dmul_rn(a, b);
#else
  return a * b;
#endif
}
DP_HOST_DEVICE DP_FORCEINLINE double rn_add(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __dadd_rn(a, b);
#else
  return a + b;
#endif
}

#if !defined(__CUDA_ARCH__) && defined(__GNUC__) && !defined(__clang__)
#define DP_NO_CONTRACT __attribute__((optimize("fp-contract=off")))
#else
#define DP_NO_CONTRACT
#endif

/// A standard normal from two 32-bit draws (Box-Muller, cosine branch), in double with only
/// correctly rounded operations.
DP_HOST_DEVICE DP_NO_CONTRACT inline double normal_from_bits(std::uint32_t a, std::uint32_t b, std::uint32_t c) {
#if defined(__clang__) && !defined(__CUDA_ARCH__)
#pragma clang fp contract(off)
#endif
  // u1 in (0, 1] so the log is finite; theta = 2 pi u2.
  const double u1 = rn_add(uniform01d(a, b), 0x1.0p-53);
  const double u2 = static_cast<double>(c >> 8) * 0x1.0p-24;
  // log(u1): u1 = 2^e m, m in [sqrt(1/2), sqrt(2)), log m = 2 atanh(s), s = f / (2 + f)
  const std::uint64_t bu = math::bits<std::uint64_t>(u1);
  double e = static_cast<double>(static_cast<std::int64_t>((bu >> 52) & 0x7ff) - 1023);
  double m = math::bits<double>((bu & 0x000fffffffffffffull) | 0x3ff0000000000000ull);
  if (m > 1.4142135623730951) {
    m = rn_mul(m, 0.5);
    e = rn_add(e, 1.0);
  }
  const double f = rn_add(m, -1.0);
  const double s = f / rn_add(2.0, f), s2 = rn_mul(s, s);
  double p = 2.0 / 15.0;
  p = rn_add(rn_mul(p, s2), 2.0 / 13.0);
  p = rn_add(rn_mul(p, s2), 2.0 / 11.0);
  p = rn_add(rn_mul(p, s2), 2.0 / 9.0);
  p = rn_add(rn_mul(p, s2), 2.0 / 7.0);
  p = rn_add(rn_mul(p, s2), 2.0 / 5.0);
  p = rn_add(rn_mul(p, s2), 2.0 / 3.0);
  p = rn_add(rn_mul(p, s2), 2.0);
  const double log_u1 = rn_add(rn_mul(e, 0.6931471805599453), rn_mul(s, p));
  const double radius = ::sqrt(rn_mul(-2.0, log_u1));
  // cos(2 pi u2) = cos(pi/2 * (4 u2)): quadrant q = round(4 u2), r = (4 u2 - q) pi/2, |r| <= pi/4
  const double t = rn_mul(u2, 4.0);
  const double q = static_cast<double>(static_cast<std::int64_t>(rn_add(t, 0.5)));
  const double r = rn_mul(rn_add(t, -q), 1.5707963267948966), r2 = rn_mul(r, r);
  double sp = -1.0 / 1307674368000.0;
  sp = rn_add(rn_mul(sp, r2), 1.0 / 6227020800.0);
  sp = rn_add(rn_mul(sp, r2), -1.0 / 39916800.0);
  sp = rn_add(rn_mul(sp, r2), 1.0 / 362880.0);
  sp = rn_add(rn_mul(sp, r2), -1.0 / 5040.0);
  sp = rn_add(rn_mul(sp, r2), 1.0 / 120.0);
  sp = rn_add(rn_mul(sp, r2), -1.0 / 6.0);
  const double sin_r = rn_add(r, rn_mul(rn_mul(r, r2), sp));
  double cp = 1.0 / 87178291200.0;
  cp = rn_add(rn_mul(cp, r2), -1.0 / 479001600.0);
  cp = rn_add(rn_mul(cp, r2), 1.0 / 3628800.0);
  cp = rn_add(rn_mul(cp, r2), -1.0 / 40320.0);
  cp = rn_add(rn_mul(cp, r2), 1.0 / 720.0);
  cp = rn_add(rn_mul(cp, r2), -1.0 / 24.0);
  cp = rn_add(rn_mul(cp, r2), 0.5);
  const double cos_r = rn_add(1.0, -rn_mul(r2, cp));
  const int quadrant = static_cast<int>(q) & 3;
  const double cos_theta = quadrant == 0 ? cos_r : quadrant == 1 ? -sin_r : quadrant == 2 ? -cos_r : sin_r;
  return rn_mul(radius, cos_theta);
}

/// dp::rand's bounds: finite, lo <= hi (PyTorch's uniform_: "from <= to"), and a finite width, so
/// that every value lo + (hi - lo) u is finite and in [lo, hi) (lo == hi gives lo).
template <class T>
void check_uniform_bounds(T lo, T hi) {
  DP_CHECK(std::isfinite(lo) && std::isfinite(hi) && lo <= hi && std::isfinite(hi - lo), value_error, "dp: rand: lo ",
           lo, " and hi ", hi, " are not a range; expected finite bounds with lo <= hi and a finite hi - lo");
}
/// dp::randn's parameters: a finite mean and a finite stddev >= 0 (PyTorch's normal_: "std >= 0").
template <class T>
void check_normal_parameters(T mean, T stddev) {
  DP_CHECK(std::isfinite(mean), value_error, "dp: randn: mean is ", mean, "; expected a finite value");
  DP_CHECK(std::isfinite(stddev) && stddev >= 0, value_error, "dp: randn: stddev is ", stddev,
           "; expected a finite value >= 0");
}

/// Sequential draws from one Philox stream on the host (shuffles, sampling decisions).
class philox_stream {
 public:
  philox_stream(std::uint64_t seed, std::uint64_t stream) : seed_(seed), stream_(stream) {}

  std::uint32_t next_u32() {
    if (lane_ == 4) {
      block_ = philox4x32(counter_++, stream_, seed_);
      lane_ = 0;
    }
    return block_.v[lane_++];
  }
  std::uint64_t next_u64() {
    const std::uint64_t hi = next_u32();
    return (hi << 32) | next_u32();
  }
  /// Uniform integer in [0, n) without modulo bias (Lemire's multiply-and-reject).
  std::uint64_t below(std::uint64_t n) {
    if (n <= 1) {
      return 0;
    }
    if (n <= 0xffffffffull) {
      const std::uint32_t bound = static_cast<std::uint32_t>(n);
      std::uint64_t m = std::uint64_t{next_u32()} * bound;
      std::uint32_t low = static_cast<std::uint32_t>(m);
      if (low < bound) {
        const std::uint32_t threshold = static_cast<std::uint32_t>(-bound) % bound;
        while (low < threshold) {
          m = std::uint64_t{next_u32()} * bound;
          low = static_cast<std::uint32_t>(m);
        }
      }
      return m >> 32;
    }
    const std::uint64_t limit = ~std::uint64_t{0} - (~std::uint64_t{0} % n);
    std::uint64_t x = next_u64();
    while (x >= limit) {
      x = next_u64();
    }
    return x % n;
  }

  /// Position in the stream, for checkpoints.
  std::uint64_t position() const { return counter_ * 4 - (4 - lane_); }
  void seek(std::uint64_t pos) {
    counter_ = pos / 4;
    lane_ = 4;
    for (std::uint64_t i = 0; i < pos % 4; ++i) {
      (void)next_u32();
    }
  }

 private:
  std::uint64_t seed_, stream_, counter_ = 0;
  philox_out block_{};
  int lane_ = 4;
};

}  // namespace dp::inline DP_ABI::detail
