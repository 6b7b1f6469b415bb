// dp::matmul against cblas_sgemm called directly (OpenBLAS), n = 2048, at 1 and 2 threads.
// dp keeps OpenBLAS single-threaded and splits the product over its own pool; the peer uses
// OpenBLAS's own threads. And a batch of 4096 small products (48 x 48 x 48, as attention heads or
// a small layer per sample make) against a loop of cblas_sgemm on one thread.
#include <cblas.h>

#include <dp/dp.hpp>

#include "common.hpp"

namespace {

constexpr dp::index_t n = 2048;

struct data {
  dp::tensor<float> a = dp::randn<float>({n, n}, dp::cpu(), 1);
  dp::tensor<float> b = dp::randn<float>({n, n}, dp::cpu(), 2);
  dp::tensor<float> c = dp::zeros<float>({n, n});
};
data& inputs() {
  static data d;
  return d;
}

constexpr dp::index_t batch = 4096, small = 48;
struct batched {
  dp::tensor<float> a = dp::randn<float>({batch, small, small}, dp::cpu(), 3);
  dp::tensor<float> b = dp::randn<float>({batch, small, small}, dp::cpu(), 4);
  dp::tensor<float> c = dp::zeros<float>({batch, small, small});
};
batched& batched_inputs() {
  static batched d;
  return d;
}
void set_batched_flops(benchmark::State& s) {
  s.counters["GFLOP/s"] = benchmark::Counter(
      2.0 * batch * small * small * small * static_cast<double>(s.iterations()) / 1e9, benchmark::Counter::kIsRate);
}

void dp_batched(benchmark::State& s) {
  auto& d = batched_inputs();
  dp::set_num_threads(static_cast<int>(s.range(0)));
  for (auto _ : s) {
    dp::detail::matmul_into(d.c, d.a, d.b);
    benchmark::ClobberMemory();
  }
  set_batched_flops(s);
}

void cblas_batched_loop(benchmark::State& s) {
  auto& d = batched_inputs();
  dp_bench::openblas_threads(1);
  constexpr dp::index_t step = small * small;
  for (auto _ : s) {
    for (dp::index_t i = 0; i < batch; ++i) {
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, small, small, small, 1.f, d.a.data() + i * step, small,
                  d.b.data() + i * step, small, 0.f, d.c.data() + i * step, small);
    }
    benchmark::ClobberMemory();
  }
  set_batched_flops(s);
}

void set_flops(benchmark::State& s) {
  s.counters["GFLOP/s"] =
      benchmark::Counter(2.0 * n * n * n * static_cast<double>(s.iterations()) / 1e9, benchmark::Counter::kIsRate);
}

void dp_sgemm(benchmark::State& s) {
  auto& d = inputs();
  dp::set_num_threads(static_cast<int>(s.range(0)));
  for (auto _ : s) {
    dp::detail::matmul_into(d.c, d.a, d.b);
    benchmark::ClobberMemory();
  }
  set_flops(s);
}

void cblas_sgemm_direct(benchmark::State& s) {
  auto& d = inputs();
  dp_bench::openblas_threads(static_cast<int>(s.range(0)));
  for (auto _ : s) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.f, d.a.data(), n, d.b.data(), n, 0.f, d.c.data(),
                n);
    benchmark::ClobberMemory();
  }
  dp_bench::openblas_threads(1);  // dp expects OpenBLAS single-threaded
  set_flops(s);
}

}  // namespace

BENCHMARK(dp_sgemm)->Arg(1)->Arg(2)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(cblas_sgemm_direct)->Arg(1)->Arg(2)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(dp_batched)->Arg(1)->Arg(2)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(cblas_batched_loop)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK_MAIN();
