// Single-precision GEMMs of the shapes dp's small and large MLPs and the digits model run, on one
// thread: dp's choice (dp::detail::gemm) beside OpenBLAS, oneDNN, LIBXSMM and Eigen called
// directly. The table in benchmarks/RESULTS.md ("GEMM by shape") comes from this binary; it is how
// dp's rule for which library takes which shape was chosen (include/dp/exec/libxsmm.hpp, onednn.hpp).
//
// Names: gemm/<shape>/<library>. Row-major C = op(A) op(B) with op given as NN, NT (a linear
// layer's forward, x W^T) or TN (its weight gradient, G^T x). LIBXSMM's JIT kernels take neither
// alpha != 1 nor the transposed-B case; for NT its time includes the copy that transposes B.
#include <string>
#include <vector>

#include <Eigen/Dense>
#include <cblas.h>

#include <dp/dp.hpp>

#include "common.hpp"

namespace {

struct gemm_shape {
  const char* name;
  int m, n, k;
  bool ta, tb;
};

// The 8 GEMMs of a 64-128-128-10 step at batch 64 (forward, input gradients, weight gradients), the
// digits model's (64-256-10, batch 64) and the large MLP's (784-512-512-10, batch 256) biggest.
const gemm_shape shapes[] = {
    {"small_fwd1", 64, 128, 64, false, true},   {"small_fwd2", 64, 128, 128, false, true},
    {"small_fwd3", 64, 10, 128, false, true},   {"small_dx3", 64, 128, 10, false, false},
    {"small_dx2", 64, 128, 128, false, false},  {"small_dw3", 10, 128, 64, true, false},
    {"small_dw2", 128, 128, 64, true, false},   {"small_dw1", 128, 64, 64, true, false},
    {"digits_fwd1", 64, 256, 64, false, true},  {"digits_fwd2", 64, 10, 256, false, true},
    {"digits_dx2", 64, 256, 10, false, false},  {"digits_dw1", 256, 64, 64, true, false},
    {"digits_dw2", 10, 256, 64, true, false},   {"large_fwd1", 256, 512, 784, false, true},
    {"large_dx2", 256, 512, 512, false, false}, {"large_dw1", 512, 784, 256, true, false},
};

struct operands {
  std::vector<float> a, b, c, scratch;
  int lda, ldb, ldc;
  explicit operands(const gemm_shape& s)
      : a(static_cast<std::size_t>(s.m) * s.k, 0.5f),
        b(static_cast<std::size_t>(s.k) * s.n, 0.25f),
        c(static_cast<std::size_t>(s.m) * s.n),
        scratch(b.size()),
        lda(s.ta ? s.m : s.k),
        ldb(s.tb ? s.k : s.n),
        ldc(s.n) {}
};

void set_flops(benchmark::State& st, const gemm_shape& s) {
  st.counters["GFLOP/s"] = benchmark::Counter(2.0 * s.m * s.n * s.k * static_cast<double>(st.iterations()) / 1e9,
                                              benchmark::Counter::kIsRate);
}

void dp_choice(benchmark::State& st, gemm_shape s) {
  operands o(s);
  dp::set_num_threads(1);
  dp::detail::mat_ref<const float> a{o.a.data(), s.m, s.k, o.lda, s.ta}, b{o.b.data(), s.k, s.n, o.ldb, s.tb};
  dp::detail::mat_ref<float> c{o.c.data(), s.m, s.n, o.ldc, false};
  for (auto _ : st) {
    dp::detail::gemm(dp::detail::host_target{}, a, b, c, 1.f, 0.f);
    benchmark::ClobberMemory();
  }
  const bool by_libxsmm = dp::detail::has_libxsmm && dp::detail::libxsmm_takes(s.tb, s.m, s.n, s.k, 1.f, 0.f);
  st.SetLabel(by_libxsmm                                                          ? "LIBXSMM"
              : dp::detail::has_onednn && dp::detail::onednn_takes(s.m, s.n, s.k) ? "oneDNN"
                                                                                  : "OpenBLAS");
  set_flops(st, s);
}

void openblas(benchmark::State& st, gemm_shape s) {
  operands o(s);
  dp_bench::openblas_threads(1);
  for (auto _ : st) {
    cblas_sgemm(CblasRowMajor, s.ta ? CblasTrans : CblasNoTrans, s.tb ? CblasTrans : CblasNoTrans, s.m, s.n, s.k, 1.f,
                o.a.data(), o.lda, o.b.data(), o.ldb, 0.f, o.c.data(), o.ldc);
    benchmark::ClobberMemory();
  }
  set_flops(st, s);
}

#if DP_HAS_ONEDNN
void onednn(benchmark::State& st, gemm_shape s) {
  operands o(s);
  for (auto _ : st) {
    dp::detail::onednn_sgemm(s.ta, s.tb, s.m, s.n, s.k, 1.f, o.a.data(), o.lda, o.b.data(), o.ldb, 0.f, o.c.data(),
                             o.ldc);
    benchmark::ClobberMemory();
  }
  set_flops(st, s);
}
#endif

#if DP_HAS_LIBXSMM
// Column-major: C^T (n x m) = op(B)^T op(A)^T, so B's storage is the first operand and A's the second.
void libxsmm(benchmark::State& st, gemm_shape s) {
  operands o(s);
  const float alpha = 1, beta = 0;
  const int flags = s.ta ? LIBXSMM_GEMM_FLAG_TRANS_B : 0;
  const libxsmm_blasint ldfirst = s.tb ? s.n : o.ldb, ldsecond = o.lda, ldc = o.ldc;
  const libxsmm_smmfunction kernel =
      libxsmm_smmdispatch(s.n, s.m, s.k, &ldfirst, &ldsecond, &ldc, &alpha, &beta, &flags, nullptr);
  if (kernel == nullptr) {
    st.SkipWithError("LIBXSMM has no kernel for this shape");
    return;
  }
  for (auto _ : st) {
    if (s.tb) {  // B is stored n x k: transpose it to k x n first (the JIT kernels cannot take it)
      libxsmm_otrans(o.scratch.data(), o.b.data(), sizeof(float), s.k, s.n, s.k, s.n);
      kernel(o.scratch.data(), o.a.data(), o.c.data());
    } else {
      kernel(o.b.data(), o.a.data(), o.c.data());
    }
    benchmark::ClobberMemory();
  }
  set_flops(st, s);
}
#endif

void eigen(benchmark::State& st, gemm_shape s) {
  using row_major = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  operands o(s);
  Eigen::setNbThreads(1);
  Eigen::Map<row_major> c(o.c.data(), s.m, s.n);
  Eigen::Map<const row_major> a(o.a.data(), s.ta ? s.k : s.m, s.ta ? s.m : s.k);
  Eigen::Map<const row_major> b(o.b.data(), s.tb ? s.n : s.k, s.tb ? s.k : s.n);
  for (auto _ : st) {
    if (s.ta) {
      c.noalias() = a.transpose() * b;
    } else if (s.tb) {
      c.noalias() = a * b.transpose();
    } else {
      c.noalias() = a * b;
    }
    benchmark::ClobberMemory();
  }
  set_flops(st, s);
}

}  // namespace

int main(int argc, char** argv) {
#if DP_HAS_LIBXSMM
  libxsmm_init();
#endif
  for (const auto& s : shapes) {
    const std::string base = std::string("gemm/") + s.name + "/";
    benchmark::RegisterBenchmark((base + "dp").c_str(), dp_choice, s)->UseRealTime()->Unit(benchmark::kMicrosecond);
    benchmark::RegisterBenchmark((base + "OpenBLAS").c_str(), openblas, s)
        ->UseRealTime()
        ->Unit(benchmark::kMicrosecond);
#if DP_HAS_ONEDNN
    benchmark::RegisterBenchmark((base + "oneDNN").c_str(), onednn, s)->UseRealTime()->Unit(benchmark::kMicrosecond);
#endif
#if DP_HAS_LIBXSMM
    benchmark::RegisterBenchmark((base + "LIBXSMM").c_str(), libxsmm, s)->UseRealTime()->Unit(benchmark::kMicrosecond);
#endif
    benchmark::RegisterBenchmark((base + "Eigen").c_str(), eigen, s)->UseRealTime()->Unit(benchmark::kMicrosecond);
  }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) {
    return 1;
  }
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
#if DP_HAS_LIBXSMM
  libxsmm_finalize();
#endif
}
