// Which GPUs a process may use, and what a failed CUDA call leaves behind. The first case also runs
// without a GPU (ctest dp_test_cuda_without_gpu): there, every cuda:N is one the process does not
// see. The second needs a driver: without one, every CUDA call returns the same error again.
#include <string>

#include <cuda_runtime.h>

#include "check.hpp"

TEST_CASE("a GPU this process does not see is a device_error that says how many it sees") {
  const int seen = dp::cuda_device_count();
  REQUIRE(seen < dp::max_cuda_devices);
  const std::string want =
      "dp: cuda:" + std::to_string(seen) + " was asked for, but this process sees " + std::to_string(seen) + " GPU(s)";
  CHECK_THROWS_WITH_AS((void)dp::zeros<float>({4}, dp::cuda(seen)), doctest::Contains(want.c_str()), dp::device_error);
  CHECK_THROWS_WITH_AS((void)dp::zeros<float>({4}, dp::cuda(seen)), doctest::Contains("CUDA_VISIBLE_DEVICES"),
                       dp::device_error);
  CHECK(dp::ones<float>({4}).to_vector() == std::vector<float>(4, 1.f));  // the host goes on
}

TEST_CASE("a CUDA call that fails leaves no error behind for the next launch check to report as its own") {
  const int seen = dp::cuda_device_count();
  REQUIRE(seen > 0);
  REQUIRE(seen < dp::max_cuda_devices);
  CHECK_THROWS_WITH_AS(DP_CUDA_CHECK(cudaSetDevice(seen)),
                       doctest::Contains("dp: CUDA call cudaSetDevice(seen) failed"), dp::device_error);
  CHECK(cudaGetLastError() == cudaSuccess);
}
