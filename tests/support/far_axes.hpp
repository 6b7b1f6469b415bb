// Axes just past int's range, for the tests that every axis argument is read as 64 bits: as an int
// parameter, 2^32 wrapped to axis 0 and -2^32-1 to axis -1, both valid.
#pragma once

#include <string>

#include <dp/dp.hpp>

namespace dp_test {

struct far_axis {
  dp::index_t value;
  std::string text;
};

inline const far_axis far_axes[] = {{dp::index_t{1} << 32, "4294967296"}, {-(dp::index_t{1} << 32) - 1, "-4294967297"}};

/// The error `op` gives for such an axis of a rank-2 tensor.
inline std::string axis_out_of_range(const std::string& op, const far_axis& a) {
  return "dp: " + op + ": axis " + a.text + " is out of range for a tensor of rank 2 (expected -2..1)";
}

}  // namespace dp_test
