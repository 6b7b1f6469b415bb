// Element functions the CPU loop can vectorise. glibc's sinf/expf are scalar calls that stop the
// vectoriser; these are branch-free (range reduction + polynomial, computed in double for float
// inputs, so results are within an ulp or two of the correctly rounded value). On the GPU the CUDA
// math library is used instead. Double inputs use the C library.
#pragma once

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

#include <dp/config.hpp>

namespace dp::inline DP_ABI::detail::math {

template <class To, class From>
DP_HOST_DEVICE DP_FORCEINLINE To bits(From f) {
  static_assert(sizeof(To) == sizeof(From));
  To t;
  std::memcpy(&t, &f, sizeof(To));
  return t;
}

// 1.5 * 2^52: adding it rounds a double (|t| < 2^51) to an integer held in the low mantissa bits.
inline constexpr double round_magic = 6755399441055744.0;

// Vectorisation rule for this file: every value is computed unconditionally and then selected
// (`c ? a : b` between finished values); with the default -ftrapping-math a conditionally evaluated
// floating-point operation is "control flow" that stops GCC's vectoriser. NaN flows through clampd.
DP_HOST_DEVICE DP_FORCEINLINE double clampd(double x, double lo, double hi) {
  x = x < lo ? lo : x;
  return x > hi ? hi : x;
}

/// e^x for |x| <= ~700 (callers clamp), relative error ~1e-15: x = k ln2 + r, |r| <= ln2/2.
DP_HOST_DEVICE DP_FORCEINLINE double exp_core(double x) {
  const double t = x * 1.4426950408889634 + round_magic;
  const std::int64_t ki = bits<std::int64_t>(t) - bits<std::int64_t>(round_magic);
  const double k = t - round_magic;
  const double r = (x - k * 0.6931471803691238) - k * 1.9082149292705877e-10;
  double p = 1.0 / 39916800.0;
  p = p * r + 1.0 / 3628800.0;
  p = p * r + 1.0 / 362880.0;
  p = p * r + 1.0 / 40320.0;
  p = p * r + 1.0 / 5040.0;
  p = p * r + 1.0 / 720.0;
  p = p * r + 1.0 / 120.0;
  p = p * r + 1.0 / 24.0;
  p = p * r + 1.0 / 6.0;
  p = p * r + 0.5;
  p = p * r + 1.0;
  p = p * r + 1.0;
  return p * bits<double>((ki + 1023) << 52);
}

DP_HOST_DEVICE DP_FORCEINLINE float exp(float x) {
#if defined(__CUDA_ARCH__)
  return ::expf(x);
#else
  return static_cast<float>(exp_core(clampd(x, -110.0, 100.0)));  // NaN in, NaN out
#endif
}

/// log(x) for float x: x = 2^e m with m in [sqrt(1/2), sqrt(2)), log m = 2 atanh(f / (2 + f)).
DP_HOST_DEVICE DP_FORCEINLINE float log(float x) {
#if defined(__CUDA_ARCH__)
  return ::logf(x);
#else
  const double xd = x;
  const std::uint64_t b = bits<std::uint64_t>(xd);
  // exponent as a double without an int->double conversion (which AVX2 cannot vectorise)
  const double e0 = bits<double>((b >> 52) | 0x4330000000000000ull) - 4503599627370496.0 - 1023.0;
  const double m1 = bits<double>((b & 0x000fffffffffffffull) | 0x3ff0000000000000ull);
  const double mh = m1 * 0.5, e1 = e0 + 1.0;
  const bool big = m1 > 1.4142135623730951;
  const double m = big ? mh : m1;
  const double e = big ? e1 : e0;
  const double f = m - 1.0;
  const double s = f / (2.0 + f), s2 = s * s;
  double p = 2.0 / 13.0;
  p = p * s2 + 2.0 / 11.0;
  p = p * s2 + 2.0 / 9.0;
  p = p * s2 + 2.0 / 7.0;
  p = p * s2 + 2.0 / 5.0;
  p = p * s2 + 2.0 / 3.0;
  p = p * s2 + 2.0;
  const double r = e * 0.6931471805599453 + s * p;
  constexpr float inf = std::numeric_limits<float>::infinity();
  float out = static_cast<float>(r);
  out = x == 0.0f ? -inf : out;
  out = x == inf ? inf : out;
  out = (x < 0.0f) | (x != x) ? std::numeric_limits<float>::quiet_NaN() : out;
  return out;
#endif
}

/// sin and cos of float x, for every float: the argument is reduced by pi/2 exactly (Payne-Hanek,
/// branch-free, below), to r in [-pi/4, pi/4]; polynomials there, the quadrant from the integer k.
DP_HOST_DEVICE DP_FORCEINLINE double sin_poly(double r, double r2) {
  double p = -1.0 / 1307674368000.0;
  p = p * r2 + 1.0 / 6227020800.0;
  p = p * r2 - 1.0 / 39916800.0;
  p = p * r2 + 1.0 / 362880.0;
  p = p * r2 - 1.0 / 5040.0;
  p = p * r2 + 1.0 / 120.0;
  p = p * r2 - 1.0 / 6.0;
  return r + r * r2 * p;
}
DP_HOST_DEVICE DP_FORCEINLINE double cos_poly(double r2) {
  double p = 1.0 / 87178291200.0;
  p = p * r2 - 1.0 / 479001600.0;
  p = p * r2 + 1.0 / 3628800.0;
  p = p * r2 - 1.0 / 40320.0;
  p = p * r2 + 1.0 / 720.0;
  p = p * r2 - 1.0 / 24.0;
  p = p * r2 + 0.5;
  return 1.0 - r2 * p;
}

/// The first 256 bits of the fraction of 2/pi (enough for the largest float exponent plus 110 bits).
inline constexpr std::uint32_t two_over_pi_bits[8] = {0xa2f9836e, 0x4e441529, 0xfc2757d1, 0xf534ddc0,
                                                      0xdb629599, 0x3c439041, 0xfe5163ab, 0xdebbc561};

/// x = m 2^e (an integer m < 2^24). In x 2/pi = sum of m 2^(e-k) over the bits k of 2/pi (bit k
/// weighs 2^-k), the bits with e - k >= 2 give multiples of 4, which do not change sin or cos.
/// Bucket j starts at bit K = 1 + 26 j <= max(e - 1, 1) and holds 29 + 29 + 53 bits from K on as
/// hi, mid, lo: x hi and x mid are exact (m times 29 bits), and x hi < 2^(24 + 26 + 1) keeps the
/// rounding by round_magic exact, so the quarter turns k and the remainder (x hi - k) + x mid keep
/// every bit the floats nearest a multiple of pi/2 need (about 30 more than a float has; the bits
/// past lo weigh at most 2^(24 + 26 - 110) = 2^-60 quarter turns).
/// Four buckets reach the largest float exponent, 104. They are picked by masks on |x|, not a table
/// lookup (GCC will not gather here on either CPU) nor `?:` on constants (it branches).
struct pi_reduction_buckets {
  static constexpr int count = 4, width = 26;
  double hi[count], mid[count], lo[count];
  double from[count];  // bucket j serves |x| >= from[j] (e - 2 >= 26 j)
};
constexpr double pow2(int p) { return std::bit_cast<double>(static_cast<std::uint64_t>(p + 1023) << 52); }
constexpr std::uint64_t two_over_pi_chunk(int first, int count) {  // bits first .. first+count-1
  std::uint64_t v = 0;
  for (int k = first; k < first + count; ++k) {
    v = v << 1 | ((two_over_pi_bits[(k - 1) / 32] >> (31 - (k - 1) % 32)) & 1u);
  }
  return v;
}
constexpr pi_reduction_buckets make_pi_reduction_buckets() {
  pi_reduction_buckets t{};
  for (int j = 0; j < pi_reduction_buckets::count; ++j) {
    const int k = 1 + pi_reduction_buckets::width * j;
    t.hi[j] = static_cast<double>(two_over_pi_chunk(k, 29)) * pow2(-k - 28);
    t.mid[j] = static_cast<double>(two_over_pi_chunk(k + 29, 29)) * pow2(-k - 57);
    t.lo[j] = static_cast<double>(two_over_pi_chunk(k + 58, 53)) * pow2(-k - 110);
    t.from[j] = pow2(pi_reduction_buckets::width * j + 2 + 23);  // x = m 2^e with m >= 2^23
  }
  return t;
}
inline constexpr pi_reduction_buckets pi_reduction = make_pi_reduction_buckets();

/// Host only (the GPU uses sinf/cosf).
DP_FORCEINLINE float sincos_impl(float x, int shift) {
  const double xd = x, ax = xd < 0 ? -xd : xd;
  double hi = pi_reduction.hi[0], mid = pi_reduction.mid[0], lo = pi_reduction.lo[0];
  for (int j = 1; j < pi_reduction_buckets::count; ++j) {
    const std::int64_t in = -static_cast<std::int64_t>(ax >= pi_reduction.from[j]);
    const auto pick = [&](double then, double otherwise) {
      return bits<double>((bits<std::int64_t>(then) & in) | (bits<std::int64_t>(otherwise) & ~in));
    };
    hi = pick(pi_reduction.hi[j], hi);
    mid = pick(pi_reduction.mid[j], mid);
    lo = pick(pi_reduction.lo[j], lo);
  }
  // k need not be the nearest integer (|f| up to 0.5 + 2^-3 is fine for the polynomials), so the
  // inexact a + b picks it; a - k is exact, and so is (a - k) + b where it is small.
  const double a = xd * hi, b = xd * mid, c = xd * lo;
  const double t = (a + b) + round_magic;
  const std::int64_t k = bits<std::int64_t>(t) - bits<std::int64_t>(round_magic);
  const double f = ((a - (t - round_magic)) + b) + c;  // quarter turns; infinity and NaN give NaN
  const double r = f * 1.5707963267948966;
  const std::int64_t q = k + shift;
  const double r2 = r * r;
  const double s = sin_poly(r, r2), co = cos_poly(r2);
  const double v = (q & 1) ? co : s, nv = -v;
  const float out = static_cast<float>((q & 2) ? nv : v);
  return (shift == 0) & (x == 0.0f) ? x : out;  // sin(-0) is -0
}
DP_HOST_DEVICE DP_FORCEINLINE float sin(float x) {
#if defined(__CUDA_ARCH__)
  return ::sinf(x);
#else
  return sincos_impl(x, 0);
#endif
}
DP_HOST_DEVICE DP_FORCEINLINE float cos(float x) {
#if defined(__CUDA_ARCH__)
  return ::cosf(x);
#else
  return sincos_impl(x, 1);
#endif
}

DP_HOST_DEVICE DP_FORCEINLINE float tanh(float x) {
#if defined(__CUDA_ARCH__)
  return ::tanhf(x);
#else
  const double xd = clampd(x, -20.0, 20.0);
  const double e = exp_core(2.0 * xd);
  const double t = (e - 1.0) / (e + 1.0);
  const bool tiny = (x < 1e-7f) & (x > -1e-7f);
  const float out = static_cast<float>(t);
  return tiny | (x != x) ? x : out;
#endif
}

DP_HOST_DEVICE DP_FORCEINLINE float sigmoid(float x) {
#if defined(__CUDA_ARCH__)
  return 1.0f / (1.0f + ::expf(-x));
#else
  const double e = exp_core(clampd(-static_cast<double>(x), -200.0, 200.0));
  return static_cast<float>(1.0 / (1.0 + e));
#endif
}

/// erf for float: a series near 0, else 1 - erfc with a Chebyshev fit of erfc (fractional error < 1.2e-7).
DP_HOST_DEVICE DP_FORCEINLINE float erf(float x) {
#if defined(__CUDA_ARCH__)
  return ::erff(x);
#else
  const double xd = x, nxd = -xd;
  const double z = x < 0.0f ? nxd : xd;
  const double t = 1.0 / (1.0 + 0.5 * z);
  double p = 0.17087277;
  p = p * t - 0.82215223;
  p = p * t + 1.48851587;
  p = p * t - 1.13520398;
  p = p * t + 0.27886807;
  p = p * t - 0.18628806;
  p = p * t + 0.09678418;
  p = p * t + 0.37409196;
  p = p * t + 1.00002368;
  p = p * t - 1.26551223;
  const double erfc = t * exp_core(clampd(-z * z + p, -700.0, 0.0));
  // near 0, 1 - erfc cancels: use the Maclaurin series there
  const double z2 = z * z;
  double q = -1.0 / 75600.0;
  q = q * z2 + 1.0 / 9360.0;
  q = q * z2 - 1.0 / 1320.0;
  q = q * z2 + 1.0 / 216.0;
  q = q * z2 - 1.0 / 42.0;
  q = q * z2 + 1.0 / 10.0;
  q = q * z2 - 1.0 / 3.0;
  q = q * z2 + 1.0;
  const double small = 1.1283791670955126 * z * q;
  const double big = 1.0 - erfc;
  const double r = z < 0.5 ? small : big, nr = -r;
  return static_cast<float>(x < 0.0f ? nr : r);
#endif
}

DP_HOST_DEVICE DP_FORCEINLINE float sqrt(float x) { return ::sqrtf(x); }
DP_HOST_DEVICE DP_FORCEINLINE float rsqrt(float x) {
#if defined(__CUDA_ARCH__)
  return ::rsqrtf(x);
#else
  return 1.0f / ::sqrtf(x);
#endif
}
DP_HOST_DEVICE DP_FORCEINLINE float pow(float a, float b) { return ::powf(a, b); }

// double: the C library (correct; not vectorised, which double work here does not need).
DP_HOST_DEVICE DP_FORCEINLINE double exp(double x) { return ::exp(x); }
DP_HOST_DEVICE DP_FORCEINLINE double log(double x) { return ::log(x); }
DP_HOST_DEVICE DP_FORCEINLINE double sin(double x) { return ::sin(x); }
DP_HOST_DEVICE DP_FORCEINLINE double cos(double x) { return ::cos(x); }
DP_HOST_DEVICE DP_FORCEINLINE double tanh(double x) { return ::tanh(x); }
DP_HOST_DEVICE DP_FORCEINLINE double sigmoid(double x) { return 1.0 / (1.0 + ::exp(-x)); }
DP_HOST_DEVICE DP_FORCEINLINE double erf(double x) { return ::erf(x); }
DP_HOST_DEVICE DP_FORCEINLINE double sqrt(double x) { return ::sqrt(x); }
DP_HOST_DEVICE DP_FORCEINLINE double rsqrt(double x) { return 1.0 / ::sqrt(x); }
DP_HOST_DEVICE DP_FORCEINLINE double pow(double a, double b) { return ::pow(a, b); }

}  // namespace dp::inline DP_ABI::detail::math
