// Fused element-wise expressions over 16M floats against their peers in the same process:
// a hand-written OpenMP loop (the bandwidth ceiling, STREAM-triad style) and Eigen.
//   (a) y = a * x + b * z            pure bandwidth
//   (b) y = a * x + b * sin(z)       bandwidth plus a transcendental function
// Bytes counted: three arrays of 4 bytes per element (two reads, one write).
#include <cmath>
#include <omp.h>

#include <Eigen/Core>

#include <dp/dp.hpp>

#include "common.hpp"

namespace {

constexpr dp::index_t n = 1 << 24;
constexpr float a = 2.f, b = 3.f;

struct data {
  dp::tensor<float> x = dp::rand<float>({n}, dp::cpu(), 1);
  dp::tensor<float> z = dp::rand<float>({n}, dp::cpu(), 2);
  dp::tensor<float> y = dp::zeros<float>({n});
};
data& inputs() {
  static data d;
  return d;
}

void set_bytes(benchmark::State& s) {
  s.SetBytesProcessed(static_cast<int64_t>(s.iterations()) * n * 3 * static_cast<int64_t>(sizeof(float)));
}

void dp_axpby(benchmark::State& s) {
  auto& d = inputs();
  dp::set_num_threads(static_cast<int>(s.range(0)));
  for (auto _ : s) {
    d.y = a * d.x + b * d.z;
    benchmark::ClobberMemory();
  }
  set_bytes(s);
}

void hand_axpby(benchmark::State& s) {
  auto& d = inputs();
  const int t = static_cast<int>(s.range(0));
  float* y = d.y.data();
  const float *x = d.x.data(), *z = d.z.data();
  for (auto _ : s) {
#pragma omp parallel for simd num_threads(t) schedule(static)
    for (dp::index_t i = 0; i < n; ++i) {
      y[i] = a * x[i] + b * z[i];
    }
    benchmark::ClobberMemory();
  }
  set_bytes(s);
}

void eigen_axpby(benchmark::State& s) {  // Eigen evaluates coefficient-wise expressions on one thread
  auto& d = inputs();
  Eigen::Map<Eigen::ArrayXf> y(d.y.data(), n);
  Eigen::Map<const Eigen::ArrayXf> x(d.x.data(), n), z(d.z.data(), n);
  for (auto _ : s) {
    y = a * x + b * z;
    benchmark::ClobberMemory();
  }
  set_bytes(s);
}

void dp_axpbsin(benchmark::State& s) {
  auto& d = inputs();
  dp::set_num_threads(static_cast<int>(s.range(0)));
  for (auto _ : s) {
    d.y = a * d.x + b * dp::sin(d.z);
    benchmark::ClobberMemory();
  }
  set_bytes(s);
}

void hand_axpbsin(benchmark::State& s) {  // std::sin: a scalar library call per element
  auto& d = inputs();
  const int t = static_cast<int>(s.range(0));
  float* y = d.y.data();
  const float *x = d.x.data(), *z = d.z.data();
  for (auto _ : s) {
#pragma omp parallel for num_threads(t) schedule(static)
    for (dp::index_t i = 0; i < n; ++i) {
      y[i] = a * x[i] + b * std::sin(z[i]);
    }
    benchmark::ClobberMemory();
  }
  set_bytes(s);
}

void eigen_axpbsin(benchmark::State& s) {
  auto& d = inputs();
  Eigen::Map<Eigen::ArrayXf> y(d.y.data(), n);
  Eigen::Map<const Eigen::ArrayXf> x(d.x.data(), n), z(d.z.data(), n);
  for (auto _ : s) {
    y = a * x + b * z.sin();
    benchmark::ClobberMemory();
  }
  set_bytes(s);
}

}  // namespace

BENCHMARK(dp_axpby)->Arg(1)->Arg(2)->UseRealTime();
BENCHMARK(hand_axpby)->Arg(1)->Arg(2)->UseRealTime();
BENCHMARK(eigen_axpby)->Arg(1)->UseRealTime();
BENCHMARK(dp_axpbsin)->Arg(1)->Arg(2)->UseRealTime();
BENCHMARK(hand_axpbsin)->Arg(1)->Arg(2)->UseRealTime();
BENCHMARK(eigen_axpbsin)->Arg(1)->UseRealTime();
BENCHMARK_MAIN();
