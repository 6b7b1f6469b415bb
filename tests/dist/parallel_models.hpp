// Models and helpers the dp::parallel host-worker tests share (tests/dist/parallel*.cpp).
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

#include <doctest/doctest.h>

#include <dp/dp.hpp>

namespace dp_test_parallel {

namespace nn = dp::nn;
struct classifier {
  nn::linear<12, 16> fc1;
  nn::batch_norm<16> bn;
  nn::linear<16, 8> fc2;
  nn::dropout drop{0.2f};
  nn::linear<8, 5> fc3;
  auto forward(auto x) const { return fc3(drop(dp::gelu(fc2(dp::relu(bn(fc1(x))))))); }
};

inline std::vector<dp::device> workers(int n) {
  std::vector<dp::device> d;
  for (int i = 0; i < n; ++i) {
    d.push_back(dp::cpu(i));
  }
  return d;
}

// One device and `n` workers with copies of the same model, both in evaluation mode (batch_norm then
// normalises by the same running statistics, so their results can be compared).
struct single_and_parallel {
  single_and_parallel(const classifier& model, int n) : single{model}, par{model, workers(n)} {
    single.eval();
    par.eval();
  }
  nn::trainer<classifier> single;
  dp::parallel<classifier> par;
};

inline dp::tensor<std::int64_t> labels(dp::index_t n, std::uint64_t seed) {
  return dp::cast<std::int64_t>(dp::rand<float>({n}, dp::cpu(), seed) * 4.99f);
}

inline void close(const std::vector<float>& got, const std::vector<float>& want, double rel, double abs) {
  REQUIRE(got.size() == want.size());
  int bad = 0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    if (!(std::fabs(got[i] - want[i]) <= abs + rel * std::fabs(want[i]))) {
      if (bad++ < 3) {
        FAIL_CHECK("element " << i << ": " << got[i] << " vs " << want[i]);
      }
    }
  }
  CHECK(bad == 0);
}

template <class Owner>
std::vector<float> replica_grads(Owner& p, std::size_t r) {
  std::vector<float> out;
  dp::detail::replica_access::for_each_replica(p, [&](std::size_t i, const auto&, const auto& g) {
    if (i == r) {
      out = g.to_vector();
    }
  });
  return out;
}
template <class Owner>
std::vector<float> replica_params(Owner& p, std::size_t r) {
  std::vector<float> out;
  dp::detail::replica_access::for_each_replica(p, [&](std::size_t i, const auto& w, const auto&) {
    if (i == r) {
      out = w.to_vector();
    }
  });
  return out;
}

}  // namespace dp_test_parallel
