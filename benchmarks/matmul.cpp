// dp::matmul against cblas_sgemm called directly (OpenBLAS), n = 2048, at 1 and 2 threads.
// dp keeps OpenBLAS single-threaded and splits the product over its own pool; the peer uses
// OpenBLAS's own threads. And batches of products the GEMM does not split (4096 of 48 x 48 x 48, as
// attention heads or a small layer per sample make; 256 of 64 x 512 x 64, an attention's scores
// over a long context) against a loop of cblas_sgemm on one thread.
#include <cstdint>

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

/// count products of [m, k] x [k, m].
struct batched {
  dp::index_t count, m, k;
  dp::tensor<float> a = dp::randn<float>({count, m, k}, dp::cpu(), 3);
  dp::tensor<float> b = dp::randn<float>({count, k, m}, dp::cpu(), 4);
  dp::tensor<float> c = dp::zeros<float>({count, m, m});
};
/// Shape 0: 4096 x 48^3 (each product too small for a thread); shape 1: 256 x 64 x 512 x 64 (2^21
/// multiply-adds each, but one block of 64 rows and columns: the GEMM does not split it).
batched& batched_inputs(std::int64_t shape) {
  static batched small{4096, 48, 48}, deep{256, 64, 512};
  return shape == 0 ? small : deep;
}
void set_batched_flops(benchmark::State& s, const batched& d) {
  s.counters["GFLOP/s"] = benchmark::Counter(
      2.0 * static_cast<double>(d.count * d.m * d.m * d.k) * static_cast<double>(s.iterations()) / 1e9,
      benchmark::Counter::kIsRate);
}

void dp_batched(benchmark::State& s) {
  auto& d = batched_inputs(s.range(0));
  dp::set_num_threads(static_cast<int>(s.range(1)));
  for (auto _ : s) {
    dp::detail::matmul_into(d.c, d.a, d.b);
    benchmark::ClobberMemory();
  }
  set_batched_flops(s, d);
}

void cblas_batched_loop(benchmark::State& s) {
  auto& d = batched_inputs(s.range(0));
  dp_bench::openblas_threads(1);
  const dp::index_t m = d.m, k = d.k;
  for (auto _ : s) {
    for (dp::index_t i = 0; i < d.count; ++i) {
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, m, k, 1.f, d.a.data() + i * m * k, k,
                  d.b.data() + i * k * m, m, 0.f, d.c.data() + i * m * m, m);
    }
    benchmark::ClobberMemory();
  }
  set_batched_flops(s, d);
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
BENCHMARK(dp_batched)->ArgsProduct({{0, 1}, {1, 2}})->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(cblas_batched_loop)->Arg(0)->Arg(1)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK_MAIN();
