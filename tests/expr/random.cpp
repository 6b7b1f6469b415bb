#include <algorithm>
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

TEST_CASE("rand<float> never gives hi: a value that rounds up to it is lo, as in PyTorch") {
  // Under seed 11, element 858091's draw is within half an ulp of 1: 1 + (2 - 1) u rounds to 2.
  const auto u = dp::rand<float>({858092}, dp::cpu(), 11, 1.f, 2.f).to_vector();
  CHECK(*std::max_element(u.begin(), u.end()) < 2.f);
  CHECK(u[858091] == 1.f);
  const auto h = dp::rand<float>({858092}, dp::cpu(), 11, 0.5f, 1.f).to_vector();
  CHECK(*std::max_element(h.begin(), h.end()) < 1.f);
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

TEST_CASE("rand refuses bounds that are not a finite range with lo <= hi") {
  const auto refused = [](double lo, double hi, const char* what) {
    CAPTURE(what);
    CHECK_THROWS_WITH_AS((void)dp::rand<double>({4}, dp::cpu(), 1, lo, hi), doctest::Contains(what), dp::value_error);
  };
  refused(3.0, -1.0, "dp: rand: lo 3 and hi -1 are not a range; expected finite bounds with lo <= hi");
  refused(NAN, 1.0, "dp: rand: lo nan and hi 1 are not a range; expected finite bounds with lo <= hi");
  refused(0.0, NAN, "dp: rand: lo 0 and hi nan are not a range; expected finite bounds with lo <= hi");
  refused(0.0, INFINITY, "dp: rand: lo 0 and hi inf are not a range; expected finite bounds with lo <= hi");
  refused(-1e308, 1e308,
          "dp: rand: lo -1e+308 and hi 1e+308 are not a range; expected finite bounds with lo <= hi "
          "and a finite hi - lo");
  CHECK_THROWS_WITH_AS((void)dp::rand<float>({4}, dp::cpu(), 1, 1.f, 0.f), doctest::Contains("dp: rand: lo 1 and hi 0"),
                       dp::value_error);
  // An empty range gives its one value.
  CHECK(dp::rand<double>({3}, dp::cpu(), 1, 2.5, 2.5).to_vector() == std::vector<double>{2.5, 2.5, 2.5});
}

TEST_CASE("randn refuses a mean that is not finite and a deviation that is negative or not finite") {
  CHECK_THROWS_WITH_AS((void)dp::randn<float>({4}, dp::cpu(), 1, 0.f, -1.f),
                       doctest::Contains("dp: randn: stddev is -1; expected a finite value >= 0"), dp::value_error);
  CHECK_THROWS_WITH_AS((void)dp::randn<double>({4}, dp::cpu(), 1, 0.0, NAN),
                       doctest::Contains("dp: randn: stddev is nan; expected a finite value >= 0"), dp::value_error);
  CHECK_THROWS_WITH_AS((void)dp::randn<double>({4}, dp::cpu(), 1, 0.0, INFINITY),
                       doctest::Contains("dp: randn: stddev is inf; expected a finite value >= 0"), dp::value_error);
  CHECK_THROWS_WITH_AS((void)dp::randn<double>({4}, dp::cpu(), 1, NAN, 1.0),
                       doctest::Contains("dp: randn: mean is nan; expected a finite value"), dp::value_error);
  // A deviation of 0 gives the mean.
  CHECK(dp::randn<double>({2}, dp::cpu(), 1, 1.5, 0.0).to_vector() == std::vector<double>{1.5, 1.5});
}
