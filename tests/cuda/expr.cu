// CUDA tests: built in CI (no GPU there), run with the device tool when a GPU is lent.
#include <cstdint>
#include <limits>
#include <vector>

#include "check.hpp"

using dp_cuda_test::check_same;

TEST_CASE("a fused expression on the GPU is one kernel, allocates nothing and matches the host") {
  const dp::index_t n = 1 << 20;
  const dp::device g = dp::cuda(0);
  auto x = dp::rand<float>({n}, g, 1), z = dp::rand<float>({n}, g, 2);
  auto y = dp::empty<float>({n}, g);
  y = 2.f * x + 3.f * dp::sin(z);
  const auto before = dp::counters();
  y = 2.f * x + 3.f * dp::sin(z);
  const auto after = dp::counters();
  CHECK(after.passes - before.passes == 1);
  CHECK(after.allocations - before.allocations == 0);
  auto hx = x.to(dp::cpu()), hz = z.to(dp::cpu());
  dp::tensor<float> hy = 2.f * hx + 3.f * dp::sin(hz);
  check_same(y.to_vector(), hy.to_vector(), 1e-6);
}

TEST_CASE("the GPU draws the same uniform numbers as the host") {
  auto d = dp::rand<float>({4096}, dp::cuda(0), 7).to_vector();
  auto h = dp::rand<float>({4096}, dp::cpu(), 7).to_vector();
  CHECK(d == h);
  check_same(dp::randn<float>({4096}, dp::cuda(0), 7).to_vector(), dp::randn<float>({4096}, dp::cpu(), 7).to_vector(),
             1e-6);
}

TEST_CASE("broadcast, strided and transposed operands on the GPU") {
  auto m = dp::rand<float>({64, 32}, dp::cpu(), 3), b = dp::rand<float>({32, 1}, dp::cpu(), 4);
  dp::tensor<float> host = dp::tanh(m.t() + b) * 2.f;
  dp::tensor<float> dev = dp::tanh(m.to(dp::cuda(0)).t() + b.to(dp::cuda(0))) * 2.f;
  check_same(dev.to_vector(), host.to_vector(), 1e-6);
}

TEST_CASE("reductions on the GPU match the host") {
  auto x = dp::rand<float>({300, 70}, dp::cpu(), 5);
  auto g = x.to(dp::cuda(0));
  CHECK(dp::sum(g).item() == doctest::Approx(dp::sum(x).item()).epsilon(1e-6));
  check_same(dp::sum(g, 0).to_vector(), dp::sum(x, 0).to_vector(), 1e-6);
  check_same(dp::mean(g * g, 1).to_vector(), dp::mean(x * x, 1).to_vector(), 1e-6);
  check_same(dp::max(g, 1).to_vector(), dp::max(x, 1).to_vector(), 0);
  CHECK(dp::argmax(g, 1).to_vector() == dp::argmax(x, 1).to_vector());
}

TEST_CASE("matmul on the GPU (cuBLAS) matches the host, transposed views included") {
  auto a = dp::randn<float>({64, 48}, dp::cpu(), 1), b = dp::randn<float>({80, 48}, dp::cpu(), 2);
  auto ga = a.to(dp::cuda(0)), gb = b.to(dp::cuda(0));
  check_same(dp::matmul(ga, gb.t()).to_vector(), dp::matmul(a, b.t()).to_vector(), 1e-4);
}

TEST_CASE("a float cast to an integer type it does not fit, on the GPU, is an error at the next read") {
  const dp::device g = dp::cuda(0);
  const auto x = dp::from_vector<float>({1.5f, std::numeric_limits<float>::quiet_NaN(), -2.5f, 0x1p63f}).to(g);
  dp::tensor<std::int64_t> c = dp::cast<std::int64_t>(x);  // queued: 0 where the cast is undefined, flagged
  CHECK_THROWS_WITH_AS(
      (void)c.to_vector(),
      doctest::Contains("on cuda:0, in a pass queued before this read (the host would have raised this "
                        "at once): cast to an integer type of a value that is NaN"),
      dp::value_error);
  CHECK(c.to_vector() == std::vector<std::int64_t>{1, 0, -2, 0});                     // raised once
  CHECK_THROWS_AS((void)dp::sum(dp::cast<std::int64_t>(x)).item(), dp::value_error);  // inside a reduction too
}

TEST_CASE("an integer division by zero on the GPU is an error at the next read, as on the host") {
  const dp::device g = dp::cuda(0);
  auto a = dp::from_vector<std::int64_t>({6, 7, 8, std::numeric_limits<std::int64_t>::min()}).to(g);
  auto b = dp::from_vector<std::int64_t>({2, 0, 4, -1}).to(g);
  dp::tensor<std::int64_t> q = a / b;  // queued: the kernel gives 0 where b is 0 and flags it
  CHECK_THROWS_WITH_AS((void)q.to_vector(),
                       doctest::Contains("on cuda:0, in a pass queued before this read (the host would have raised "
                                         "this at once): integer division by zero"),
                       dp::value_error);
  // Raised once; the values are the host's (0 for the zero divisor, INT64_MIN / -1 wraps).
  const dp::tensor<std::int64_t> on_host = a.to(dp::cpu()) / dp::from_vector<std::int64_t>({2, 1, 4, -1});
  const auto host = on_host.to_vector();
  CHECK(q.to_vector() == std::vector<std::int64_t>{3, 0, 2, host[3]});
  dp::tensor<std::int64_t> ok = a / dp::full<std::int64_t>({4}, 3, g);
  CHECK(ok.to_vector() == std::vector<std::int64_t>{2, 2, 2, std::numeric_limits<std::int64_t>::min() / 3});
  CHECK_THROWS_AS((void)dp::sum(a / b).item(), dp::value_error);  // inside a reduction too
}

TEST_CASE("where on the GPU computes only the branch it picks when one may fault, flat and strided, as on the host") {
  const dp::device g = dp::cuda(0);
  const auto a = dp::from_vector<int>({6, 4, 9, 8}).to(g), b = dp::from_vector<int>({0, 2, 3, 0}).to(g);
  // The flat kernel computed both branches (a / b faulted where b is 0); the general one did not.
  CHECK(dp::tensor<int>(dp::where(b != 0, a / b, 0)).to_vector() == std::vector<int>{0, 2, 3, 0});
  CHECK(dp::sum(dp::where(b != 0, a / b, 0)).item() == 5);
  const auto at = a.reshape({2, 2}).transpose(0, 1), bt = b.reshape({2, 2}).transpose(0, 1);
  CHECK(dp::tensor<int>(dp::where(bt != 0, at / bt, -1)).to_vector() == std::vector<int>{-1, 3, 2, -1});
}

TEST_CASE("an integer expression assigned to a narrower integer tensor on the GPU refuses a value it would wrap") {
  const dp::device g = dp::cuda(0);
  const auto x = dp::from_vector<std::int64_t>({300, -1, 7}).to(g);
  dp::tensor<std::uint8_t> y = x * std::int64_t{1};  // queued: 0 where it does not fit, flagged
  CHECK_THROWS_WITH_AS((void)y.to_vector(), doctest::Contains("to an integer type that does not hold it"),
                       dp::value_error);
  CHECK(y.to_vector() == std::vector<std::uint8_t>{0, 0, 7});  // raised once
  CHECK(dp::tensor<std::int16_t>(x * std::int64_t{1}).to_vector() == std::vector<std::int16_t>{300, -1, 7});
}
