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
