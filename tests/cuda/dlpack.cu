// DLPack with CUDA memory: the data is ready on the other library's stream, both ways.
#include <cuda_runtime.h>

#include "check.hpp"

namespace dl = dp::io::dlpack;

TEST_CASE("a GPU tensor exported to DLPack is ready on the consumer's stream") {
  cudaStream_t consumer = nullptr;
  REQUIRE(cudaStreamCreateWithFlags(&consumer, cudaStreamNonBlocking) == cudaSuccess);
  auto x = dp::randn<float>({1 << 22}, dp::cuda(0), 1);
  dp::tensor<float> y = dp::sin(x) * 2.f;  // queued on dp's stream
  dl::DLManagedTensor* m = dl::to_dlpack(y, static_cast<void*>(consumer));
  std::vector<float> got(1 << 22);
  REQUIRE(cudaMemcpyAsync(got.data(), m->dl_tensor.data, got.size() * sizeof(float), cudaMemcpyDeviceToHost,
                          consumer) == cudaSuccess);
  REQUIRE(cudaStreamSynchronize(consumer) == cudaSuccess);
  dp_cuda_test::check_same(got, y.to_vector(), 0);
  m->deleter(m);
  cudaStreamDestroy(consumer);
}

TEST_CASE("GPU memory imported from DLPack waits for the producer's stream and outlives dp's work on it") {
  static int released = 0;
  cudaStream_t producer = nullptr;
  REQUIRE(cudaStreamCreateWithFlags(&producer, cudaStreamNonBlocking) == cudaSuccess);
  const std::size_t n = 1 << 22;
  float* data = nullptr;
  REQUIRE(cudaMalloc(&data, n * sizeof(float)) == cudaSuccess);
  std::vector<float> host(n);
  for (std::size_t i = 0; i < n; ++i) {
    host[i] = static_cast<float>(i % 1000);
  }
  REQUIRE(cudaMemcpyAsync(data, host.data(), n * sizeof(float), cudaMemcpyHostToDevice, producer) == cudaSuccess);
  static std::int64_t shape[1] = {static_cast<std::int64_t>(n)};
  auto* m = new dl::DLManagedTensor{};
  m->dl_tensor = {data, {dl::kDLCUDA, 0}, 1, dl::dtype_of<float>(), shape, nullptr, 0};
  m->manager_ctx = data;
  m->deleter = [](dl::DLManagedTensor* self) {
    (void)cudaFree(self->manager_ctx);  // after dp's queued work on it: dp synchronised first
    ++released;
    delete self;
  };
  {
    dp::tensor<float> t = dl::from_dlpack<float>(m, static_cast<void*>(producer));
    dp::tensor<float> twice = t * 2.f;
    CHECK(twice.to_vector()[999] == 1998.f);
    const double r = static_cast<double>(n % 1000);  // 0 + 1 + ... + 999 per full thousand, then the rest
    CHECK(dp::sum(t).item() ==
          doctest::Approx(static_cast<double>(n / 1000) * 499500.0 + r * (r - 1) / 2).epsilon(1e-5));
  }
  CHECK(released == 1);
  cudaStreamDestroy(producer);
}
