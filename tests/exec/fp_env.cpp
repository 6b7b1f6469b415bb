// The floating-point environment of dp's host loops: subnormals flushed by default, every part of a
// loop in its caller's environment, the caller's own environment restored.
#include <atomic>
#include <cfenv>
#include <chrono>
#include <cmath>
#include <thread>
#include <vector>

#include <doctest/doctest.h>

#include <dp/dp.hpp>

namespace {
/// Restores dp's setting and the rounding mode when a test case ends, however it ends.
struct setting_guard {
  bool was = dp::flush_denormals();
  ~setting_guard() {
    dp::set_flush_denormals(was);
    std::fesetround(FE_TONEAREST);
  }
};

/// How many of t's elements equal `v`, bit for bit (0 == -0 aside).
long count_equal(const dp::tensor<float>& t, float v) {
  long k = 0;
  for (dp::index_t i = 0; i < t.numel(); ++i) {
    k += t.data()[i] == v;
  }
  return k;
}
}  // namespace

TEST_CASE("DP_FLUSH_DENORMALS is 1 or 0 (unset: 1), or an error naming it") {
  using dp::detail::env_flush_denormals;
  CHECK(env_flush_denormals(nullptr));
  CHECK(env_flush_denormals(""));
  CHECK(env_flush_denormals("1"));
  CHECK_FALSE(env_flush_denormals("0"));
  for (const char* bad : {"yes", "true", "2", " 1", "0 ", "off"}) {
    CHECK_THROWS_WITH_AS(env_flush_denormals(bad), doctest::Contains("DP_FLUSH_DENORMALS must be 1"), dp::value_error);
  }
}

#if DP_HAS_MXCSR
TEST_CASE("host loops and GEMMs flush subnormal floats to zero by default, and keep them when told to") {
  const setting_guard guard;
  // Products of two floats are exact in double: the one rounding to float is the IEEE result.
  const float out = static_cast<float>(static_cast<double>(1e-30f) * static_cast<double>(1e-10f));
  const float sub = 1e-40f;
  const float in = static_cast<float>(static_cast<double>(sub) * static_cast<double>(1e10f));
  REQUIRE(std::fpclassify(out) == FP_SUBNORMAL);
  REQUIRE(std::fpclassify(sub) == FP_SUBNORMAL);
  REQUIRE(in > 1e-31f);
  const dp::index_t n = 1 << 17;  // several parts: the pool's workers take some
  const auto tiny = dp::from_vector(std::vector<float>(static_cast<std::size_t>(n), 1e-30f), {n});
  const auto subs = dp::from_vector(std::vector<float>(static_cast<std::size_t>(n), sub), {n});
  auto y = dp::empty<float>({n});
  const auto a = dp::full<float>({2, 2}, 1e-30f), b = dp::full<float>({2, 2}, 1e-10f);

  dp::set_flush_denormals(true);
  CHECK(dp::flush_denormals());
  y = tiny * 1e-10f;  // a subnormal result is written as zero (FTZ)
  CHECK(count_equal(y, 0.f) == n);
  y = subs * 1e10f;  // a subnormal input is read as zero (DAZ)
  CHECK(count_equal(y, 0.f) == n);
  CHECK(count_equal(dp::matmul(a, b), 0.f) == 4);  // each entry 2e-40 in IEEE arithmetic

  dp::set_flush_denormals(false);
  CHECK_FALSE(dp::flush_denormals());
  y = tiny * 1e-10f;
  CHECK(count_equal(y, out) == n);
  y = subs * 1e10f;
  CHECK(count_equal(y, in) == n);
  const auto c = dp::matmul(a, b);
  CHECK(std::fpclassify(c.data()[0]) == FP_SUBNORMAL);
}

TEST_CASE("a loop leaves its caller's floating-point environment as it found it") {
  const setting_guard guard;
  dp::set_flush_denormals(true);
  const unsigned before = dp::detail::read_fp_control();
  // A thread starts with IEEE subnormals (unless the program was linked with -ffast-math's startup
  // code, which sets the bits for good: this suite is not).
  REQUIRE((before & dp::detail::flush_bits) == 0);
  auto x = dp::rand<float>({1 << 17});
  x = x * 2.f;
  CHECK(dp::detail::read_fp_control() == before);
}

TEST_CASE("exception flags a loop raises on its caller's thread stay raised after it") {
  const setting_guard guard;
  dp::set_flush_denormals(true);
  const auto x = dp::full<float>({64}, -1.f);  // 64 elements: one part, on the caller
  auto y = dp::empty<float>({64});
  std::feclearexcept(FE_ALL_EXCEPT);
  y = dp::sqrt(x);  // invalid: NaN
  CHECK(std::fetestexcept(FE_INVALID) != 0);
  CHECK(std::isnan(y.data()[0]));
}

TEST_CASE("every part of a loop runs in its caller's environment (flushing and rounding), whichever thread takes it") {
  const setting_guard guard;
  if (dp::detail::thread_pool::instance().size() < 2 || dp::num_threads() < 2) {
    MESSAGE("one thread: no worker to check");
    return;
  }
  const auto caller = std::this_thread::get_id();
  int worker_parts = 0, wrong = 0;
  for (int round = 0; round < 40; ++round) {
    const bool flush = round % 2 == 0;
    const int rounding = round % 4 < 2 ? FE_UPWARD : FE_TONEAREST;
    dp::set_flush_denormals(flush);
    REQUIRE(std::fesetround(rounding) == 0);
    const unsigned expected = dp::detail::read_fp_control() | (flush ? dp::detail::flush_bits : 0u);
    std::vector<unsigned> seen(2);
    std::vector<std::thread::id> by(2);
    std::atomic<int> started{0};
    dp::detail::parallel_for(2, 1, [&](dp::index_t b, dp::index_t e) {
      ++started;
      // The first part waits (1 s at most) for the other to start elsewhere: a worker takes it.
      const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(1);
      while (b == 0 && started.load() < 2 && std::chrono::steady_clock::now() < until) {
        std::this_thread::yield();
      }
      for (dp::index_t p = b; p < e; ++p) {
        seen[static_cast<std::size_t>(p)] = dp::detail::read_fp_control();
        by[static_cast<std::size_t>(p)] = std::this_thread::get_id();
      }
    });
    for (int p = 0; p < 2; ++p) {
      wrong += seen[static_cast<std::size_t>(p)] != expected;
      worker_parts += by[static_cast<std::size_t>(p)] != caller;
    }
  }
  CHECK(wrong == 0);
  CHECK(worker_parts > 0);  // the check above saw a worker's part
}
#endif
