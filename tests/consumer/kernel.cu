// A CUDA source against dp::cuda: a __device__ lambda needs the --extended-lambda flag the target
// carries, a concept needs C++20. Compiled, not run.
#include <concepts>
#include <cstdio>

#include <dp/config.hpp>

static_assert(DP_HAS_CUDA == 1, "nvcc must see DP_HAS_CUDA=1");

template <class F>
__global__ void apply(F f, float* out) {
  out[threadIdx.x] = f(static_cast<float>(threadIdx.x));
}

template <std::floating_point T>
T twice(T v) {
  return 2 * v;
}

int main() {
  float* out = nullptr;
  if (cudaMalloc(&out, 32 * sizeof(float)) != cudaSuccess) {
    std::printf("no GPU: compiled and linked only\n");
    return 0;
  }
  apply<<<1, 32>>>([] __device__(float v) { return v * v; }, out);
  cudaFree(out);
  return twice(0.f) == 0.f ? 0 : 1;
}
