// A full training step (forward, cross_entropy, backward, SGD with momentum) for two MLPs, fp32:
//   large: 784-512-512-10 at batch 256 (GEMM bound: about 1 GFLOP per step)
//   small:  64-128-128-10 at batch 64  (overhead bound)
// at 1 and 2 threads. The PyTorch side runs in compare/torch_mlp_step.py; benchmarks/run prints both.
// Also dp::parallel: on one device (its overhead over the bare trainer) and on two host workers of
// one thread each (its scaling over one worker of one thread).
#include <vector>

#include <cblas.h>

#include <dp/dp.hpp>

#include "common.hpp"

namespace nn = dp::nn;

namespace {

using large_mlp = nn::sequential<nn::linear<784, 512>, nn::relu, nn::linear<512, 512>, nn::relu, nn::linear<512, 10>>;
using small_mlp = nn::sequential<nn::linear<64, 128>, nn::relu, nn::linear<128, 128>, nn::relu, nn::linear<128, 10>>;

template <class Model>
void step(benchmark::State& s, dp::index_t batch, dp::index_t features) {
  dp::set_num_threads(static_cast<int>(s.range(0)));
  nn::manual_seed(0);
  nn::trainer<Model> t{Model{}};
  auto opt = dp::optim::sgd(t, {.lr = 0.01, .momentum = 0.9});
  auto x = dp::randn<float>({batch, features}, dp::cpu(), 1);
  auto y = dp::tensor<std::int64_t>(dp::cast<std::int64_t>(dp::rand<float>({batch}, dp::cpu(), 2) * 9.99f));
  dp_bench::timed_steps(s, t, opt, x, y);
}

void mlp_large(benchmark::State& s) { step<large_mlp>(s, 256, 784); }
void mlp_small(benchmark::State& s) { step<small_mlp>(s, 64, 64); }

/// The same step through dp::parallel on `workers` host workers (the total thread count is
/// range(0); each worker gets its share).
template <class Model>
void parallel_step(benchmark::State& s, int workers, dp::index_t batch, dp::index_t features) {
  dp::set_num_threads(static_cast<int>(s.range(0)));
  nn::manual_seed(0);
  std::vector<dp::device> devices;
  for (int i = 0; i < workers; ++i) {
    devices.push_back(dp::cpu(i));
  }
  dp::parallel<Model> par{Model{}, devices};
  auto opt = dp::optim::sgd(par, {.lr = 0.01, .momentum = 0.9});
  auto x = dp::randn<float>({batch, features}, dp::cpu(), 1);
  auto y = dp::tensor<std::int64_t>(dp::cast<std::int64_t>(dp::rand<float>({batch}, dp::cpu(), 2) * 9.99f));
  dp_bench::timed_steps(s, par, opt, x, y);
}
void parallel1_large(benchmark::State& s) { parallel_step<large_mlp>(s, 1, 256, 784); }
void parallel2_large(benchmark::State& s) { parallel_step<large_mlp>(s, 2, 256, 784); }
void parallel1_small(benchmark::State& s) { parallel_step<small_mlp>(s, 1, 64, 64); }
void parallel2_small(benchmark::State& s) { parallel_step<small_mlp>(s, 2, 64, 64); }

/// Only the GEMMs of one small-MLP step (3 forward, 5 backward: no dX for the first layer), straight
/// through cblas at 1 thread: the floor of the small step that no fusion removes.
void gemms_small(benchmark::State& s) {
  dp_bench::openblas_threads(1);
  const int b = 64, d[4] = {64, 128, 128, 10};
  std::vector<std::vector<float>> act(4), grad(4), w(3), dw(3);
  for (int l = 0; l < 4; ++l) {
    act[static_cast<std::size_t>(l)].assign(static_cast<std::size_t>(b * d[l]), 0.5f);
    grad[static_cast<std::size_t>(l)].assign(static_cast<std::size_t>(b * d[l]), 0.25f);
  }
  for (int l = 0; l < 3; ++l) {
    w[static_cast<std::size_t>(l)].assign(static_cast<std::size_t>(d[l] * d[l + 1]), 0.01f);
    dw[static_cast<std::size_t>(l)].assign(static_cast<std::size_t>(d[l] * d[l + 1]), 0.f);
  }
  auto at = [](auto& v, int l) { return v[static_cast<std::size_t>(l)].data(); };
  for (auto _ : s) {
    for (int l = 0; l < 3; ++l) {  // Y[b, out] = X[b, in] W[out, in]^T
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, b, d[l + 1], d[l], 1.f, at(act, l), d[l], at(w, l), d[l],
                  0.f, at(act, l + 1), d[l + 1]);
    }
    for (int l = 2; l >= 0; --l) {  // dW = dY^T X, dX = dY W
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, d[l + 1], d[l], b, 1.f, at(grad, l + 1), d[l + 1],
                  at(act, l), d[l], 0.f, at(dw, l), d[l]);
      if (l > 0) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, b, d[l], d[l + 1], 1.f, at(grad, l + 1), d[l + 1],
                    at(w, l), d[l], 0.f, at(grad, l), d[l]);
      }
    }
    benchmark::ClobberMemory();
  }
  s.counters["steps/s"] = benchmark::Counter(static_cast<double>(s.iterations()), benchmark::Counter::kIsRate);
}

}  // namespace

BENCHMARK(gemms_small)->UseRealTime()->Unit(benchmark::kMicrosecond)->MinTime(2.0);
BENCHMARK(mlp_large)->Arg(1)->Arg(2)->UseRealTime()->Unit(benchmark::kMillisecond)->MinTime(2.0);
BENCHMARK(mlp_small)->Arg(1)->Arg(2)->UseRealTime()->Unit(benchmark::kMicrosecond)->MinTime(2.0);
BENCHMARK(parallel1_large)->Arg(1)->UseRealTime()->Unit(benchmark::kMillisecond)->MinTime(2.0);
BENCHMARK(parallel1_small)->Arg(1)->UseRealTime()->Unit(benchmark::kMicrosecond)->MinTime(2.0);
BENCHMARK(parallel2_large)->Arg(2)->UseRealTime()->Unit(benchmark::kMillisecond)->MinTime(2.0);
BENCHMARK(parallel2_small)->Arg(2)->UseRealTime()->Unit(benchmark::kMicrosecond)->MinTime(2.0);
BENCHMARK_MAIN();
