#include <cstdlib>

#include <doctest/doctest.h>

#include <dp/dp.hpp>

TEST_CASE("devices print and compare") {
  CHECK(dp::cpu().str() == "cpu:0");
  CHECK(dp::cpu(3).str() == "cpu:3");
  CHECK(dp::cuda(1).str() == "cuda:1");
  CHECK(dp::cpu(0) == dp::cpu());
  CHECK(dp::cpu(1) != dp::cpu(0));
}

TEST_CASE("device lists parse the DP_DEVICES forms") {
  CHECK(dp::parse_devices("cpu:3") == std::vector<dp::device>{dp::cpu(0), dp::cpu(1), dp::cpu(2)});
  CHECK(dp::parse_devices("cuda:0,1") == std::vector<dp::device>{dp::cuda(0), dp::cuda(1)});
  CHECK(dp::parse_devices("cpu:0,cpu:2") == std::vector<dp::device>{dp::cpu(0), dp::cpu(2)});
  CHECK_THROWS_AS(dp::parse_devices("gpu:1"), dp::value_error);
  CHECK_THROWS_AS(dp::parse_devices("cpu:0"), dp::value_error);
}

TEST_CASE("devices() gives host workers on a machine without GPUs and honours DP_DEVICES") {
  ::setenv("DP_DEVICES", "cpu:7", 1);
  const auto d = dp::devices();
  ::unsetenv("DP_DEVICES");
  REQUIRE(d.size() == 7);
  CHECK(d[6] == dp::cpu(6));
  if (dp::cuda_device_count() == 0) {
    for (auto x : dp::devices()) {
      CHECK(x.is_cpu());
    }
  }
}

#if !DP_HAS_CUDA
TEST_CASE("asking for CUDA in a build without it is a device_error that says how to fix it") {
  try {
    (void)dp::zeros<float>({2}, dp::cuda(0));
    FAIL("expected a device_error");
  } catch (const dp::device_error& e) {
    CHECK(std::string(e.what()).find("nvcc") != std::string::npos);
  }
}
#endif
