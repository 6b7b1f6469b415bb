#include <limits>
#include <sstream>

#include <doctest/doctest.h>

#include <dp/dp.hpp>

TEST_CASE("tensors print like PyTorch with shape and device") {
  std::ostringstream os;
  os << dp::from_vector<float>({1, 2.5f, -3, 4}, {2, 2});
  CHECK(os.str() ==
        "tensor([[ 1.0000,  2.5000],\n"
        "        [-3.0000,  4.0000]], shape={2, 2}, device=cpu:0)");
  std::ostringstream i;
  i << dp::from_vector<int>({1, 20, 3});
  CHECK(i.str() == "tensor([ 1, 20,  3], shape={3}, device=cpu:0)");
  std::ostringstream big;
  big << dp::arange<float>(5000);
  CHECK(big.str().find("...") != std::string::npos);
  std::ostringstream sci;
  sci << dp::from_vector<double>({1e-6, 1.0});
  CHECK(sci.str().find("e-06") != std::string::npos);
}

TEST_CASE("a large tensor prints its first and last three entries per dimension, reading only those") {
  std::ostringstream rows;
  rows << dp::arange<std::int64_t>(1200).reshape({2, 600});
  CHECK(rows.str() ==
        "tensor([[   0,    1,    2, ...,  597,  598,  599],\n"
        "        [ 600,  601,  602, ..., 1197, 1198, 1199]], shape={2, 600}, device=cpu:0)");
  // A transposed view: the corners are read through its strides.
  std::ostringstream corners;
  corners << dp::arange<float>(2000).reshape({50, 40}).t();
  CHECK(
      corners.str().starts_with("tensor([[   0.0000,   40.0000,   80.0000, ..., 1880.0000, 1920.0000, 1960.0000],\n"
                                "        [   1.0000,   41.0000,   81.0000, ..., 1881.0000, 1921.0000, 1961.0000],"));
  CHECK(
      corners.str().ends_with("[  39.0000,   79.0000,  119.0000, ..., 1919.0000, 1959.0000, 1999.0000]], "
                              "shape={40, 50}, device=cpu:0)"));
  // A broadcast view of 2^40 elements (4 TiB as floats) printed by copying all of them: it threw.
  std::ostringstream huge;
  huge << dp::ones<float>({1}).broadcast_to({dp::index_t{1} << 40});
  CHECK(huge.str() ==
        "tensor([1.0000, 1.0000, 1.0000, ..., 1.0000, 1.0000, 1.0000], shape={1099511627776}, device=cpu:0)");
}

TEST_CASE("an empty tensor prints as [] with its shape, not one [] per row") {
  std::ostringstream os;
  os << dp::zeros<float>({100000, 0});  // printed 100000 rows of "[]" (1.2 MB)
  CHECK(os.str() == "tensor([], shape={100000, 0}, device=cpu:0)");
}

TEST_CASE("NaN prints as nan whatever its sign bit, as in PyTorch; infinities keep their sign") {
  std::ostringstream os;
  os << dp::from_vector<float>({-std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::quiet_NaN(),
                                -std::numeric_limits<float>::infinity(), 1.f});
  // 0/0 gives a NaN with its sign bit set on x86, which glibc printed as "-nan".
  // Right-aligned to the widest element, as PyTorch prints tensor([   nan,    nan,   -inf, 1.0000]).
  CHECK(os.str() == "tensor([   nan,    nan,   -inf, 1.0000], shape={4}, device=cpu:0)");
}
