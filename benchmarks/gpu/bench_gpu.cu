// GPU benchmarks for benchmarks/gpu/run: dp on CUDA device 0 beside its peers in the same process.
//   (a) y = a*x + b*z over 16M and 64M floats, against a device-to-device cudaMemcpyAsync of x (the
//       bandwidth ceiling) and a hand-written float4 kernel. GB/s count bytes read plus written:
//       12 per element for the expressions, 8 for the copy.
//   (b) y = a*x + b*sin(z), the same sizes.
//   (c) sgemm n = 2048 and 4096: dp::matmul against cublasSgemm called directly (GFLOP/s).
//   (d) a training step (forward, cross_entropy, backward, SGD with momentum) of benchmarks/mlp_step.cpp's
//       two MLPs on the GPU, steps/s: large 784-512-512-10 at batch 256, small 64-128-128-10 at batch 64.
//       Two rows each, as PyTorch's peer has them: `trainer` reads the loss every step (backward's
//       return value; PyTorch's loss.item()), `async` never does (backward_async; PyTorch eager).
//   (e) the same step through dp::parallel: on one GPU (its overhead over the bare trainer), and over
//       two GPUs where there are two (a real scatter and NCCL all-reduce; skipped otherwise).
//   (f) the step captured in a dp::cuda_graph and replayed: backward_async + opt.step. It first checks
//       that replays train exactly as eager steps do (counters max_param_diff, loss_diff).
// Every row runs about a second of warm-up first (the GPU idles at low clocks). Element-wise and GEMM
// rows are timed with CUDA events on dp's stream; training rows in wall time over batches of steps
// that end with one synchronisation, as PyTorch's peer times its steps.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include <benchmark/benchmark.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <dp/dp.hpp>

namespace nn = dp::nn;

namespace {

using large_mlp = nn::sequential<nn::linear<784, 512>, nn::relu, nn::linear<512, 512>, nn::relu, nn::linear<512, 10>>;
using small_mlp = nn::sequential<nn::linear<64, 128>, nn::relu, nn::linear<128, 128>, nn::relu, nn::linear<128, 10>>;

constexpr float a = 2.f, b = 3.f;
/// Launches per timed iteration of the event-timed rows: amortises launch latency, keeps the queue full.
constexpr int launches = 8;
/// Seconds of warm-up before any row is timed (the GPU idles at low clocks; --quick halves it).
double warm_up_seconds = 1.0;

// ------------------------------------------------------------------------------------ CUDA helpers
std::string cuda_error_text(const char* call, cudaError_t e) {
  return std::string(call) + ": " + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ")";
}

void check(cudaError_t e, const char* call) {
  if (e != cudaSuccess) {
    throw std::runtime_error(cuda_error_text(call, e));
  }
}
#define BENCH_CUDA(expr) check((expr), #expr)

void check_cublas(cublasStatus_t st, const char* call) {
  if (st != CUBLAS_STATUS_SUCCESS) {
    throw std::runtime_error(std::string(call) + " failed with cuBLAS status " + std::to_string(static_cast<int>(st)));
  }
}

/// The stream on which dp orders all its work on device 0; the peers run on it too.
cudaStream_t stream() { return dp::detail::cuda_stream(0); }
void sync() { dp::detail::cuda_sync(0); }

/// GPU time of the work enqueued on dp's stream between start() and seconds().
class event_timer {
 public:
  event_timer() {
    BENCH_CUDA(cudaEventCreate(&start_));
    BENCH_CUDA(cudaEventCreate(&stop_));
  }
  ~event_timer() {
    (void)cudaEventDestroy(start_);
    (void)cudaEventDestroy(stop_);
  }
  event_timer(const event_timer&) = delete;
  event_timer& operator=(const event_timer&) = delete;

  void start() { BENCH_CUDA(cudaEventRecord(start_, stream())); }
  double seconds() {
    BENCH_CUDA(cudaEventRecord(stop_, stream()));
    BENCH_CUDA(cudaEventSynchronize(stop_));
    float ms = 0;
    BENCH_CUDA(cudaEventElapsedTime(&ms, start_, stop_));
    return ms / 1e3;
  }

 private:
  cudaEvent_t start_ = nullptr, stop_ = nullptr;
};

/// Runs `launch` `launches` times per iteration and reports the GPU time of each iteration.
template <class F>
void event_timed(benchmark::State& s, F&& launch) {
  event_timer timer;
  const auto t0 = std::chrono::steady_clock::now();
  do {  // first use (module loading, pool warm-up), then until the clocks are up
    for (int i = 0; i < launches; ++i) {
      launch();
    }
    sync();
  } while (std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() < warm_up_seconds);
  for (auto _ : s) {
    timer.start();
    for (int i = 0; i < launches; ++i) {
      launch();
    }
    s.SetIterationTime(timer.seconds());
  }
}

/// Skips the benchmark with the message of any exception instead of ending the program.
template <class F>
void guarded(benchmark::State& s, F&& body) {
  try {
    body(s);
  } catch (const std::exception& e) {
    (void)cudaGetLastError();
    s.SkipWithError(e.what());
  } catch (...) {
    (void)cudaGetLastError();
    s.SkipWithError("an exception that is not a std::exception");
  }
}

// ------------------------------------------------------------------------------------ (a), (b) element-wise
struct vectors {
  dp::tensor<float> x, z, y;
  explicit vectors(dp::index_t n)
      : x(dp::rand<float>({n}, dp::cuda(0), 1)),
        z(dp::rand<float>({n}, dp::cuda(0), 2)),
        y(dp::zeros<float>({n}, dp::cuda(0))) {}
};
vectors& inputs(dp::index_t n) {
  static std::map<dp::index_t, std::unique_ptr<vectors>> all;
  auto& v = all[n];
  if (!v) {
    v = std::make_unique<vectors>(n);
  }
  return *v;
}

void set_bytes(benchmark::State& s, dp::index_t n, int arrays) {
  s.SetBytesProcessed(static_cast<int64_t>(s.iterations()) * launches * n * arrays *
                      static_cast<int64_t>(sizeof(float)));
}

void dp_axpby(benchmark::State& s, dp::index_t n) {
  auto& d = inputs(n);
  event_timed(s, [&] { d.y = a * d.x + b * d.z; });
  set_bytes(s, n, 3);
}

void dp_axpbsin(benchmark::State& s, dp::index_t n) {
  auto& d = inputs(n);
  event_timed(s, [&] { d.y = a * d.x + b * dp::sin(d.z); });
  set_bytes(s, n, 3);
}

/// The ceiling: the runtime's device-to-device copy of x into y (4n bytes read, 4n written).
void copy_d2d(benchmark::State& s, dp::index_t n) {
  auto& d = inputs(n);
  const std::size_t bytes = static_cast<std::size_t>(n) * sizeof(float);
  event_timed(s,
              [&] { BENCH_CUDA(cudaMemcpyAsync(d.y.data(), d.x.data(), bytes, cudaMemcpyDeviceToDevice, stream())); });
  set_bytes(s, n, 2);
}

__global__ void axpby_kernel(float4* __restrict__ y, const float4* __restrict__ x, const float4* __restrict__ z,
                             float alpha, float beta, dp::index_t n4) {
  const dp::index_t stride = static_cast<dp::index_t>(gridDim.x) * blockDim.x;
  for (dp::index_t i = static_cast<dp::index_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n4; i += stride) {
    const float4 xv = x[i], zv = z[i];
    y[i] = make_float4(alpha * xv.x + beta * zv.x, alpha * xv.y + beta * zv.y, alpha * xv.z + beta * zv.z,
                       alpha * xv.w + beta * zv.w);
  }
}

/// A hand-written float4 kernel for the same expression (n is a multiple of 4 here).
void hand_axpby(benchmark::State& s, dp::index_t n) {
  auto& d = inputs(n);
  const dp::index_t n4 = n / 4;
  const auto grid = static_cast<unsigned>(std::min<dp::index_t>((n4 + 255) / 256, 1 << 20));
  event_timed(s, [&] {
    axpby_kernel<<<grid, 256, 0, stream()>>>(reinterpret_cast<float4*>(d.y.data()),
                                             reinterpret_cast<const float4*>(d.x.data()),
                                             reinterpret_cast<const float4*>(d.z.data()), a, b, n4);
    BENCH_CUDA(cudaGetLastError());
  });
  set_bytes(s, n, 3);
}

// ------------------------------------------------------------------------------------ (c) sgemm
struct matrices {
  dp::tensor<float> lhs, rhs, out;
  explicit matrices(dp::index_t n)
      : lhs(dp::randn<float>({n, n}, dp::cuda(0), 1)),
        rhs(dp::randn<float>({n, n}, dp::cuda(0), 2)),
        out(dp::zeros<float>({n, n}, dp::cuda(0))) {}
};
matrices& operands(dp::index_t n) {
  static std::map<dp::index_t, std::unique_ptr<matrices>> all;
  auto& m = all[n];
  if (!m) {
    m = std::make_unique<matrices>(n);
  }
  return *m;
}

void set_flops(benchmark::State& s, dp::index_t n) {
  const double nd = static_cast<double>(n);
  s.counters["GFLOP/s"] = benchmark::Counter(2.0 * nd * nd * nd * launches * static_cast<double>(s.iterations()) / 1e9,
                                             benchmark::Counter::kIsRate);
}

void dp_sgemm(benchmark::State& s, dp::index_t n) {
  auto& m = operands(n);
  event_timed(s, [&] { m.out = dp::matmul(m.lhs, m.rhs); });
  set_flops(s, n);
}

/// cublasSgemm on its own handle (default math mode, as dp's), on dp's stream. Row-major C = A B is
/// column-major C^T = B^T A^T, the call dp makes.
void cublas_sgemm(benchmark::State& s, dp::index_t n) {
  auto& m = operands(n);
  cublasHandle_t h = nullptr;
  check_cublas(cublasCreate(&h), "cublasCreate");
  std::unique_ptr<cublasContext, cublasStatus_t (*)(cublasHandle_t)> owner(h, cublasDestroy);
  check_cublas(cublasSetStream(h, stream()), "cublasSetStream");
  const int ni = static_cast<int>(n);
  const float one = 1.f, zero = 0.f;
  event_timed(s, [&] {
    check_cublas(cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, ni, ni, ni, &one, m.rhs.data(), ni, m.lhs.data(), ni, &zero,
                             m.out.data(), ni),
                 "cublasSgemm");
  });
  set_flops(s, n);
}

// ------------------------------------------------------------------------------------ (d), (e), (f) training
template <class Model>
Model seeded_model() {
  nn::manual_seed(0);
  return Model{};
}

dp::tensor<float> batch_inputs(dp::index_t batch, dp::index_t features) {
  return dp::randn<float>({batch, features}, dp::cuda(0), 1);
}
dp::tensor<std::int64_t> batch_labels(dp::index_t batch) {
  return dp::tensor<std::int64_t>(dp::cast<std::int64_t>(dp::rand<float>({batch}, dp::cuda(0), 2) * 9.99f));
}

/// A trainer on the GPU with its optimizer and one batch, warmed up (traced, pool filled) as
/// benchmarks/mlp_step.cpp does. Every instance starts from the same weights.
template <class Model>
struct mlp_run {
  nn::trainer<Model> t;
  dp::optim::sgd<nn::trainer<Model>> opt;
  dp::tensor<float> x;
  dp::tensor<std::int64_t> y;
  double loss = 0;

  mlp_run(dp::index_t batch, dp::index_t features)
      : t(seeded_model<Model>(), dp::cuda(0)),
        opt(t, {.lr = 0.01, .momentum = 0.9}),
        x(batch_inputs(batch, features)),
        y(batch_labels(batch)) {
    for (int i = 0; i < 3; ++i) {
      step();
    }
  }
  void step() {
    loss = t.backward(nn::cross_entropy, x, y);
    opt.step();
  }
};

/// Steps between the synchronisations of a timed training row.
constexpr int steps_per_sync = 16;

/// Times `step` (which queues one training step) in wall time: warm-up first, then batches of
/// steps_per_sync steps each ending with one synchronisation, so queued steps count.
template <class Step>
void time_steps(benchmark::State& s, Step&& step) {
  const auto t0 = std::chrono::steady_clock::now();
  while (std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() < warm_up_seconds) {
    step();
  }
  sync();
  for (auto _ : s) {
    const auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < steps_per_sync; ++i) {
      step();
    }
    sync();
    s.SetIterationTime(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  s.counters["steps/s"] =
      benchmark::Counter(static_cast<double>(s.iterations() * steps_per_sync), benchmark::Counter::kIsRate);
}

/// (d) steps that read the loss back (backward), or never do (backward_async).
template <class Model>
void trainer_step(benchmark::State& s, dp::index_t batch, dp::index_t features, bool read_loss) {
  mlp_run<Model> r(batch, features);
  time_steps(s, [&] {
    if (read_loss) {
      r.step();
    } else {
      (void)r.t.backward_async(nn::cross_entropy, r.x, r.y);
      r.opt.step();
    }
  });
  s.counters["loss"] = r.t.backward(nn::cross_entropy, r.x, r.y);
}

/// (e) dp::parallel over the first `gpus` GPUs, reading the loss as backward does.
template <class Model>
void parallel_step(benchmark::State& s, dp::index_t batch, dp::index_t features, int gpus) {
  std::vector<dp::device> devices;
  for (int i = 0; i < gpus; ++i) {
    devices.push_back(dp::cuda(i));
  }
  dp::parallel<Model> par{seeded_model<Model>(), devices};
  auto opt = dp::optim::sgd(par, {.lr = 0.01, .momentum = 0.9});
  const auto x = batch_inputs(batch, features);
  const auto y = batch_labels(batch);
  double loss = 0;
  time_steps(s, [&] {
    loss = par.backward(nn::cross_entropy, x, y);
    opt.step();
  });
  s.counters["loss"] = loss;
}

/// (f) replays of the captured step.
template <class Model>
void graph_step(benchmark::State& s, dp::index_t batch, dp::index_t features) {
  // Both runs are built and warmed before capture, so that capture finds every block it needs cached.
  mlp_run<Model> r(batch, features), reference(batch, features);
  dp::tensor<float> loss;
  dp::cuda_graph g;
  try {
    g.capture(dp::cuda(0), [&] {
      loss = r.t.backward_async(nn::cross_entropy, r.x, r.y);
      r.opt.step();
    });
  } catch (const std::exception& e) {
    s.SkipWithError((std::string("capturing backward_async + opt.step failed: ") + e.what()).c_str());
    return;
  }
  constexpr int checked = 5;  // replays against eager steps: the same weights and loss, or the graph is wrong
  for (int i = 0; i < checked; ++i) {
    g.replay();
  }
  const double graph_loss = loss.item();
  for (int i = 0; i < checked; ++i) {
    reference.step();
  }
  sync();
  const std::vector<float> got = dp::detail::trainer_access::flat_params(r.t).to_vector(),
                           want = dp::detail::trainer_access::flat_params(reference.t).to_vector();
  double diff = 0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    diff = std::max(diff, static_cast<double>(std::fabs(got[i] - want[i])));
  }
  time_steps(s, [&] { g.replay(); });
  s.counters["loss"] = loss.item();
  s.counters["max_param_diff"] = diff;
  s.counters["loss_diff"] = std::fabs(graph_loss - reference.loss);
}

// ------------------------------------------------------------------------------------ registration
void register_all(double min_time) {
  auto add = [&](const std::string& name, auto body, bool events) {
    auto* bm = benchmark::RegisterBenchmark(name.c_str(), [body](benchmark::State& s) { guarded(s, body); });
    bm->MinTime(min_time)->Unit(benchmark::kMicrosecond);
    if (events) {
      bm->UseManualTime();
    } else {
      bm->UseRealTime();
    }
  };
  for (const dp::index_t n : {dp::index_t{1} << 24, dp::index_t{1} << 26}) {
    const std::string size = std::to_string(n >> 20) + "M";
    add("axpby/" + size + "/dp", [n](benchmark::State& s) { dp_axpby(s, n); }, true);
    add("axpby/" + size + "/hand", [n](benchmark::State& s) { hand_axpby(s, n); }, true);
    add("copy/" + size + "/memcpy", [n](benchmark::State& s) { copy_d2d(s, n); }, true);
    add("axpbsin/" + size + "/dp", [n](benchmark::State& s) { dp_axpbsin(s, n); }, true);
  }
  for (const dp::index_t n : {dp::index_t{2048}, dp::index_t{4096}}) {
    add("sgemm/" + std::to_string(n) + "/dp", [n](benchmark::State& s) { dp_sgemm(s, n); }, true);
    add("sgemm/" + std::to_string(n) + "/cublas", [n](benchmark::State& s) { cublas_sgemm(s, n); }, true);
  }
  add("mlp/large/trainer", [](benchmark::State& s) { trainer_step<large_mlp>(s, 256, 784, true); }, true);
  add("mlp/small/trainer", [](benchmark::State& s) { trainer_step<small_mlp>(s, 64, 64, true); }, true);
  add("mlp/large/async", [](benchmark::State& s) { trainer_step<large_mlp>(s, 256, 784, false); }, true);
  add("mlp/small/async", [](benchmark::State& s) { trainer_step<small_mlp>(s, 64, 64, false); }, true);
  add("mlp/large/parallel1", [](benchmark::State& s) { parallel_step<large_mlp>(s, 256, 784, 1); }, true);
  add("mlp/small/parallel1", [](benchmark::State& s) { parallel_step<small_mlp>(s, 64, 64, 1); }, true);
  if (dp::cuda_device_count() >= 2) {
    add("mlp/large/parallel2", [](benchmark::State& s) { parallel_step<large_mlp>(s, 256, 784, 2); }, true);
  }
  add("mlp/large/graph", [](benchmark::State& s) { graph_step<large_mlp>(s, 256, 784); }, true);
  add("mlp/small/graph", [](benchmark::State& s) { graph_step<small_mlp>(s, 64, 64); }, true);
}

}  // namespace

int main(int argc, char** argv) {
  // --quick (ours, not Google Benchmark's): shorter runs.
  double min_time = 0.3;
  std::vector<char*> args;
  for (int i = 0; i < argc; ++i) {
    if (std::strcmp(argv[i], "--quick") == 0) {
      min_time = 0.1;
      warm_up_seconds = 0.5;
    } else {
      args.push_back(argv[i]);
    }
  }
  int count = 0;
  if (const cudaError_t e = cudaGetDeviceCount(&count); e != cudaSuccess || count == 0) {
    std::fprintf(stderr, "bench_gpu: no usable CUDA device (%s)\n",
                 e != cudaSuccess ? cudaGetErrorString(e) : "none visible");
    return 2;
  }
  cudaDeviceProp prop{};
  if (cudaGetDeviceProperties(&prop, 0) == cudaSuccess) {
    benchmark::AddCustomContext("gpu", prop.name);
  }
  register_all(min_time);
  int n = static_cast<int>(args.size());
  args.push_back(nullptr);
  benchmark::Initialize(&n, args.data());
  if (benchmark::ReportUnrecognizedArguments(n, args.data())) {
    return 1;
  }
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
