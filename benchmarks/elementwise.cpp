// Fused element-wise expressions over 16M floats against their peers in the same process:
// a hand-written OpenMP loop (the bandwidth ceiling, STREAM-triad style) and Eigen.
//   (a) y = a * x + b * z            pure bandwidth
//   (b) y = a * x + b * sin(z)       bandwidth plus a transcendental function
// Bytes counted: three arrays of 4 bytes per element (two reads, one write).
// And rows normalised by values broadcast along them, layer_norm's last pass over a 256 x 512 batch
// (in cache): y = (x - mu) * rs * w + b with mu, rs of shape [256, 1] and w, b of [512]; bytes: x
// read and y written.
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

constexpr dp::index_t rows = 256, cols = 512;
struct norm_data {
  dp::tensor<float> x = dp::rand<float>({rows, cols}, dp::cpu(), 3);
  dp::tensor<float> mu = dp::rand<float>({rows, 1}, dp::cpu(), 4);
  dp::tensor<float> rs = dp::rand<float>({rows, 1}, dp::cpu(), 5);
  dp::tensor<float> w = dp::rand<float>({cols}, dp::cpu(), 6);
  dp::tensor<float> b = dp::rand<float>({cols}, dp::cpu(), 7);
  dp::tensor<float> y = dp::zeros<float>({rows, cols});
};
norm_data& norm_inputs() {
  static norm_data d;
  return d;
}
void set_norm_bytes(benchmark::State& s) {
  s.SetBytesProcessed(static_cast<int64_t>(s.iterations()) * rows * cols * 2 * static_cast<int64_t>(sizeof(float)));
}

void dp_rownorm(benchmark::State& s) {
  auto& d = norm_inputs();
  dp::set_num_threads(1);
  for (auto _ : s) {
    d.y = (d.x - d.mu) * d.rs * d.w + d.b;
    benchmark::ClobberMemory();
  }
  set_norm_bytes(s);
}

void hand_rownorm(benchmark::State& s) {
  auto& d = norm_inputs();
  float* y = d.y.data();
  const float *x = d.x.data(), *mu = d.mu.data(), *rs = d.rs.data(), *w = d.w.data(), *b = d.b.data();
  for (auto _ : s) {
    for (dp::index_t i = 0; i < rows; ++i) {
#pragma omp simd
      for (dp::index_t j = 0; j < cols; ++j) {
        y[i * cols + j] = (x[i * cols + j] - mu[i]) * rs[i] * w[j] + b[j];
      }
    }
    benchmark::ClobberMemory();
  }
  set_norm_bytes(s);
}

void eigen_rownorm(benchmark::State& s) {
  auto& d = norm_inputs();
  using rows_t = Eigen::Array<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  Eigen::Map<rows_t> y(d.y.data(), rows, cols);
  Eigen::Map<const rows_t> x(d.x.data(), rows, cols);
  Eigen::Map<const Eigen::ArrayXf> mu(d.mu.data(), rows), rs(d.rs.data(), rows);
  Eigen::Map<const Eigen::Array<float, 1, Eigen::Dynamic>> w(d.w.data(), cols), b(d.b.data(), cols);
  for (auto _ : s) {
    y = (((x.colwise() - mu).colwise() * rs).rowwise() * w).rowwise() + b;
    benchmark::ClobberMemory();
  }
  set_norm_bytes(s);
}

}  // namespace

BENCHMARK(dp_rownorm)->UseRealTime();
BENCHMARK(hand_rownorm)->UseRealTime();
BENCHMARK(eigen_rownorm)->UseRealTime();
BENCHMARK(dp_axpby)->Arg(1)->Arg(2)->UseRealTime();
BENCHMARK(hand_axpby)->Arg(1)->Arg(2)->UseRealTime();
BENCHMARK(eigen_axpby)->Arg(1)->UseRealTime();
BENCHMARK(dp_axpbsin)->Arg(1)->Arg(2)->UseRealTime();
BENCHMARK(hand_axpbsin)->Arg(1)->Arg(2)->UseRealTime();
BENCHMARK(eigen_axpbsin)->Arg(1)->UseRealTime();
BENCHMARK_MAIN();
