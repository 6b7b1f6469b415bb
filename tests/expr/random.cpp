#include <cmath>

#include <doctest/doctest.h>

#include <dp/dp.hpp>

TEST_CASE("Philox4x32-10 matches the published known-answer vectors") {
  // Random123 kat_vectors: philox4x32 10 rounds.
  auto r = dp::detail::philox4x32(0, 0, 0);
  CHECK(r.v[0] == 0x6627e8d5u);
  CHECK(r.v[1] == 0xe169c58du);
  CHECK(r.v[2] == 0xbc57ac4cu);
  CHECK(r.v[3] == 0x9b00dbd8u);
  r = dp::detail::philox4x32(~0ull, ~0ull, ~0ull);
  CHECK(r.v[0] == 0x408f276du);
  CHECK(r.v[1] == 0x41c83b0eu);
  CHECK(r.v[2] == 0xa20bc7c6u);
  CHECK(r.v[3] == 0x6d5451fdu);
  r = dp::detail::philox4x32(0x85a308d3243f6a88ull, 0x0370734413198a2eull, 0x299f31d0a4093822ull);
  CHECK(r.v[0] == 0xd16cfe09u);
  CHECK(r.v[1] == 0x94fdccebu);
  CHECK(r.v[2] == 0x5001e420u);
  CHECK(r.v[3] == 0x24126ea1u);
}

TEST_CASE("rand and randn are reproducible from the seed and independent of the tensor's size") {
  auto a = dp::randn<float>({1000}, dp::cpu(), 42).to_vector();
  auto b = dp::randn<float>({1000}, dp::cpu(), 42).to_vector();
  auto c = dp::randn<float>({1000}, dp::cpu(), 43).to_vector();
  CHECK(a == b);
  CHECK(a != c);
  auto big = dp::randn<float>({50, 40}, dp::cpu(), 42).to_vector();
  CHECK(std::vector<float>(big.begin(), big.begin() + 1000) == a);
}

TEST_CASE("rand is uniform on [lo, hi) and randn has the asked mean and deviation") {
  const int n = 200000;
  auto u = dp::rand<double>({n}, dp::cpu(), 7, -1.0, 3.0).to_vector();
  double s = 0, lo = 1e9, hi = -1e9;
  for (double x : u) {
    s += x;
    lo = std::min(lo, x);
    hi = std::max(hi, x);
  }
  CHECK(lo >= -1.0);
  CHECK(hi < 3.0);
  CHECK(s / n == doctest::Approx(1.0).epsilon(0.01));
  auto z = dp::randn<float>({n}, dp::cpu(), 9, 2.f, 0.5f).to_vector();
  double m = 0, v = 0;
  for (float x : z) {
    m += x;
  }
  m /= n;
  for (float x : z) {
    v += (x - m) * (x - m);
  }
  v /= n;
  CHECK(m == doctest::Approx(2.0).epsilon(0.005));
  CHECK(std::sqrt(v) == doctest::Approx(0.5).epsilon(0.01));
  // the tails are normal too: about 4.55% beyond two deviations
  int beyond = 0;
  for (float x : z) {
    beyond += std::fabs(x - 2.0) > 1.0;
  }
  CHECK(beyond / double(n) == doctest::Approx(0.0455).epsilon(0.06));
}

TEST_CASE("the host stream draws unbiased integers and can seek") {
  dp::detail::philox_stream s(1, 2);
  int counts[3] = {};
  for (int i = 0; i < 30000; ++i) {
    ++counts[s.below(3)];
  }
  for (int c : counts) {
    CHECK(c == doctest::Approx(10000).epsilon(0.05));
  }
  dp::detail::philox_stream a(5, 0), b(5, 0);
  for (int i = 0; i < 7; ++i) {
    (void)a.next_u32();
  }
  b.seek(a.position());
  CHECK(a.next_u32() == b.next_u32());
}
