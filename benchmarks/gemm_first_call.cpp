// The first oneDNN products of a process: what a short job pays before oneDNN's kernels exist.
// `bench_gemm_first dp` runs them through dp's GEMM (a matmul primitive per shape), `... sgemm`
// through dnnl_sgemm (which dp used before, and which generates its whole kernel family on its first
// NN or TN call). One process per measurement, so benchmarks/run starts each afresh; prints JSON.
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <iterator>
#include <string_view>
#include <vector>

#include <dp/dp.hpp>

int main(int argc, char** argv) {
#if DP_HAS_ONEDNN
  const std::string_view how = argc > 1 ? argv[1] : "dp";
  if (how != "dp" && how != "sgemm") {
    std::fprintf(stderr, "usage: bench_gemm_first dp|sgemm\n");
    return 2;
  }
  if (how == "dp" && !dp::onednn_enabled()) {  // it would time OpenBLAS
    std::fprintf(stderr, "bench_gemm_first: dp's oneDNN path is off (DP_ONEDNN=0)\n");
    return 1;
  }
  dp::set_num_threads(1);
  struct shape {
    int m, n, k;
    bool ta, tb;
  };
  // The oneDNN products of the digits step (forward x W1^T, dW1), then the small MLP's.
  const shape shapes[] = {{64, 256, 64, false, true},  {256, 64, 64, true, false},   {64, 128, 64, false, true},
                          {64, 128, 128, false, true}, {64, 128, 128, false, false}, {128, 128, 64, true, false},
                          {128, 64, 64, true, false}};
  std::vector<float> a(256 * 256, 0.5f), b(256 * 256, 0.25f), c(256 * 256);
  dp::detail::blas_single_thread_once();  // OpenBLAS's set-up, outside the time in both ways
  const auto start = std::chrono::steady_clock::now();
  double first_ms = 0;
  for (const auto& s : shapes) {
    const int lda = s.ta ? s.m : s.k, ldb = s.tb ? s.k : s.n;
    if (how == "dp") {
      const dp::detail::mat_ref<const float> ma{a.data(), s.m, s.k, lda, s.ta}, mb{b.data(), s.k, s.n, ldb, s.tb};
      dp::detail::gemm(dp::detail::host_target{}, ma, mb, dp::detail::mat_ref<float>{c.data(), s.m, s.n, s.n, false},
                       1.f, 0.f);
    } else {
      const dp::detail::onednn_one_thread one;
      dnnl_sgemm(s.ta ? 'T' : 'N', s.tb ? 'T' : 'N', s.m, s.n, s.k, 1.f, a.data(), lda, b.data(), ldb, 0.f, c.data(),
                 s.n);
    }
    if (first_ms == 0) {
      first_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    }
  }
  const double all_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  std::printf("{\"first_ms\": %.3f, \"all_ms\": %.3f, \"shapes\": %zu}\n", first_ms, all_ms, std::size(shapes));
  return 0;
#else
  (void)argc;
  (void)argv;
  std::printf("{\"absent\": true}\n");
  return 0;
#endif
}
