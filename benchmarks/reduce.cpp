// Reductions fused with their input: sum over 16M floats, sum of squares (x*x never stored), and
// a row-wise max over [4096, 4096], at 1 and 2 threads. The PyTorch side is
// compare/torch_reduce.py; benchmarks/run prints both (GB/s of input read).
#include <dp/dp.hpp>

#include "common.hpp"

namespace {

constexpr dp::index_t n = dp::index_t{1} << 24;

template <class F>
void run(benchmark::State& s, F&& f) {
  dp::set_num_threads(static_cast<int>(s.range(0)));
  const auto x = dp::randn<float>({4096, n / 4096}, dp::cpu(), 1);
  f(x);
  for (auto _ : s) {
    f(x);
  }
  s.SetBytesProcessed(static_cast<std::int64_t>(s.iterations()) * n * 4);
}

void dp_sum(benchmark::State& s) {
  run(s, [](const dp::tensor<float>& x) { benchmark::DoNotOptimize(dp::sum(x).item()); });
}
void dp_sum_squares(benchmark::State& s) {
  run(s, [](const dp::tensor<float>& x) { benchmark::DoNotOptimize(dp::sum(x * x).item()); });
}
void dp_row_max(benchmark::State& s) {
  auto out = dp::empty<float>({4096});
  run(s, [&](const dp::tensor<float>& x) {
    out = dp::max(x, 1);
    benchmark::DoNotOptimize(out.data());
  });
}

}  // namespace

BENCHMARK(dp_sum)->Arg(1)->Arg(2)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(dp_sum_squares)->Arg(1)->Arg(2)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(dp_row_max)->Arg(1)->Arg(2)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK_MAIN();
