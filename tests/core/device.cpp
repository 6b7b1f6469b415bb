#include <algorithm>
#include <cstdlib>
#include <thread>
#include <vector>

#include <doctest/doctest.h>

#include <dp/dp.hpp>

TEST_CASE("devices print and compare") {
  CHECK(dp::cpu().str() == "cpu:0");
  CHECK(dp::cpu(3).str() == "cpu:3");
  CHECK(dp::cuda(1).str() == "cuda:1");
  CHECK(dp::cpu(0) == dp::cpu());
  CHECK(dp::cpu(1) != dp::cpu(0));
}

TEST_CASE("a device list names indices and ranges, never counts") {
  using v = std::vector<dp::device>;
  CHECK(dp::parse_devices("cpu:3") == v{dp::cpu(3)});
  CHECK(dp::parse_devices("cpu:0") == v{dp::cpu(0)});
  CHECK(dp::parse_devices("cpu:0-2") == v{dp::cpu(0), dp::cpu(1), dp::cpu(2)});
  CHECK(dp::parse_devices("cpu:3,4") == v{dp::cpu(3), dp::cpu(4)});
  CHECK(dp::parse_devices("cpu:0,cpu:2") == v{dp::cpu(0), dp::cpu(2)});
  CHECK(dp::parse_devices("cpu:0-1,5") == v{dp::cpu(0), dp::cpu(1), dp::cpu(5)});
  CHECK(dp::parse_devices("cuda:1") == v{dp::cuda(1)});
  CHECK(dp::parse_devices("cuda:0,1") == v{dp::cuda(0), dp::cuda(1)});
  CHECK(dp::parse_devices("cpu:1,cuda:0-1") == v{dp::cpu(1), dp::cuda(0), dp::cuda(1)});
  CHECK(dp::parse_devices("cpu").size() == std::max(1u, std::thread::hardware_concurrency()));
}

TEST_CASE("a device list that cannot be read is a value_error that prints the grammar") {
  for (const char* bad : {"gpu:1", "cpu:", "cpu:x", "cpu:-1", "cpu:2-1", "3", ",cpu:0", "cpu:0,", "cpu:0,,1", "cpu:1-",
                          "cpu:0 ", "cuda:0:1"}) {
    CAPTURE(bad);
    CHECK_THROWS_WITH_AS(dp::parse_devices(bad), doctest::Contains("KIND:FIRST-LAST"), dp::value_error);
  }
  CHECK_THROWS_WITH_AS(dp::parse_devices(""), doctest::Contains("e.g. cpu:0-3"), dp::value_error);
  // The message quotes the whole index or range that was wrong, not the empty part before a '-'.
  CHECK_THROWS_WITH_AS(dp::parse_devices("cpu:-1"), doctest::Contains("'-1' is not a device index or FIRST-LAST range"),
                       dp::value_error);
  CHECK_THROWS_WITH_AS(dp::parse_devices("cpu:0-x"), doctest::Contains("'0-x' is not a device index or FIRST-LAST"),
                       dp::value_error);
  CHECK_THROWS_WITH_AS(dp::parse_devices("cpu:x"), doctest::Contains("'x' is not a device index;"), dp::value_error);
  CHECK_THROWS_WITH_AS(dp::parse_device("cuda:y"), doctest::Contains("'y' is not a device index;"), dp::value_error);
}

TEST_CASE("device indices past the supported range and duplicates are rejected, not wrapped") {
  CHECK_THROWS_WITH_AS(dp::parse_devices("cpu:99999999999"),
                       doctest::Contains("index 99999999999 is out of range (cpu indices are 0 to 1023)"),
                       dp::value_error);
  CHECK_THROWS_WITH_AS(dp::parse_devices("cuda:64"), doctest::Contains("cuda indices are 0 to 63"), dp::value_error);
  CHECK_THROWS_WITH_AS(dp::parse_devices("cpu:0-2,1"), doctest::Contains("names cpu:1 twice"), dp::value_error);
  CHECK_THROWS_WITH_AS(dp::require_usable(dp::cpu(-1)), doctest::Contains("expected 0 to 1023"), dp::device_error);
}

TEST_CASE("devices() gives host workers on a machine without GPUs and honours DP_DEVICES") {
  ::setenv("DP_DEVICES", "cpu:0-6", 1);
  const auto d = dp::devices();
  ::setenv("DP_DEVICES", "cpu:7", 1);
  const auto one = dp::devices();
  ::unsetenv("DP_DEVICES");
  REQUIRE(d.size() == 7);
  CHECK(d[6] == dp::cpu(6));
  CHECK(one == std::vector<dp::device>{dp::cpu(7)});
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
