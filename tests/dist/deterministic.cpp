// The deterministic mode: the same bits for any number of host workers (and, in tests/mpi, ranks),
// and the default mode as the control that shows the difference is real.
#include <cstring>
#include <vector>

#include <doctest/doctest.h>

#include <dp/dp.hpp>

namespace nn = dp::nn;

namespace {

struct net {
  nn::linear<12, 24> fc1;
  nn::batch_norm<24> bn;
  nn::dropout drop{0.2f};
  nn::linear<24, 5> fc2;
  auto forward(auto x) const { return fc2(drop(dp::relu(bn(fc1(x))))); }
};

struct rows_only {  // no batch statistics: a training-mode forward changes no buffer
  nn::linear<12, 24> fc1;
  nn::dropout drop{0.3f};
  nn::linear<24, 5> fc2;
  auto forward(auto x) const { return fc2(drop(dp::relu(fc1(x)))); }
};

std::vector<dp::device> workers(int n) {
  std::vector<dp::device> d;
  for (int i = 0; i < n; ++i) {
    d.push_back(dp::cpu(i));
  }
  return d;
}

/// Every parameter and buffer after `steps` adamw steps on one global batch of `samples`, then
/// the last loss: the bytes a memcmp compares.
std::vector<unsigned char> trained(int n, bool deterministic, dp::index_t samples = 37, int steps = 20,
                                   dp::index_t chunk = 5) {
  nn::manual_seed(7);
  dp::parallel<net> par{net{}, workers(n), {.deterministic = deterministic, .chunk = chunk}};
  auto opt = dp::optim::adamw(par, {.lr = 1e-2});
  const auto x = dp::randn<float>({samples, 12}, dp::cpu(), 3);
  const dp::tensor<std::int64_t> y = dp::cast<std::int64_t>(dp::rand<float>({samples}, dp::cpu(), 4) * 4.99f);
  double loss = 0;
  for (int s = 0; s < steps; ++s) {
    loss = par.backward(nn::cross_entropy, x, y);
    opt.step();
  }
  std::vector<unsigned char> bytes;
  auto add = [&](const auto& t) {
    const auto v = t.to_vector();
    const auto* p = reinterpret_cast<const unsigned char*>(v.data());
    bytes.insert(bytes.end(), p, p + v.size() * sizeof(v[0]));
  };
  nn::for_each_parameter(par.model(), [&](const std::string&, const auto& w) { add(w.value()); });
  nn::for_each_buffer(par.model(), [&](const std::string&, const auto& b) { add(b.value()); });
  const auto* l = reinterpret_cast<const unsigned char*>(&loss);
  bytes.insert(bytes.end(), l, l + sizeof(loss));
  return bytes;
}

bool same_bits(const std::vector<unsigned char>& a, const std::vector<unsigned char>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size()) == 0;
}

}  // namespace

TEST_CASE("deterministic: every parameter, buffer and the loss have the same bits on 1, 2, 3, 4 and 7 workers") {
  // 37 samples in chunks of 5 (the last one 2 samples): 8 chunks, spread unevenly over 3 and 7 workers.
  const auto one = trained(1, true);
  for (int n : {2, 3, 4, 7}) {
    CAPTURE(n);
    CHECK(same_bits(trained(n, true), one));
  }
}

TEST_CASE("deterministic: a batch with fewer chunks than workers, and chunks larger than a worker's share") {
  const auto one = trained(1, true, 10, 5, 4);  // chunks 4, 4, 2: workers 4 to 7 get none
  CHECK(same_bits(trained(7, true, 10, 5, 4), one));
  CHECK(same_bits(trained(2, true, 10, 5, 4), one));
}

TEST_CASE("the default mode is allowed to differ with the worker count (the control of the cases above)") {
  // If this ever holds bit for bit, the deterministic tests above no longer show anything.
  CHECK_FALSE(same_bits(trained(1, false), trained(3, false)));
}

TEST_CASE("deterministic: a training-mode par(x) that would update batch statistics is refused with what to do") {
  nn::manual_seed(1);
  dp::parallel<net> par{net{}, workers(2), {.deterministic = true}};
  const auto x = dp::randn<float>({8, 12}, dp::cpu(), 3);
  CHECK_THROWS_WITH_AS((void)par(x), doctest::Contains("call par.eval() before par(x)"), dp::value_error);
  par.eval();
  CHECK_NOTHROW((void)par(x));
  // Without batch statistics a training-mode forward changes no parameter or buffer, so nothing
  // the mode promises depends on it: allowed.
  nn::manual_seed(2);
  dp::parallel<rows_only> three{rows_only{}, workers(3), {.deterministic = true}};
  CHECK_NOTHROW((void)three(x));
}

TEST_CASE("deterministic: no_sync and a chunk of zero are refused with what to do") {
  nn::manual_seed(1);
  dp::parallel<net> par{net{}, workers(2), {.deterministic = true}};
  const auto x = dp::randn<float>({8, 12}, dp::cpu(), 3);
  const dp::tensor<std::int64_t> y = dp::zeros<std::int64_t>({8});
  CHECK_THROWS_WITH_AS((void)par.backward(nn::cross_entropy, x, y, dp::no_sync),
                       doctest::Contains("dp::no_sync is not available in the deterministic mode"), dp::value_error);
  CHECK_THROWS_WITH_AS((dp::parallel<net>{net{}, workers(2), {.deterministic = true, .chunk = 0}}),
                       doctest::Contains("parallel_options::chunk must be positive"), dp::value_error);
}
