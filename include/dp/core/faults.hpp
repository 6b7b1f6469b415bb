// Faults an element-wise pass can only flag: input for which the hardware would trap (an integer
// division by zero) or C++ leaves the result undefined (a float cast to an integer type it does not
// fit). The pass goes on with 0 there; the host raises the fault after its pass, a GPU kernel stores
// the code in its device's status word (core/device_status.hpp) and the host raises it at its next
// read. One code and one message per fault, for both.
#pragma once

#include <atomic>
#include <cstdint>

#include <dp/config.hpp>

namespace dp::inline DP_ABI::detail {

enum class fault : std::int64_t { none = 0, integer_division_by_zero = 1, integer_cast_out_of_range = 2 };

/// What went wrong and what to do, for a message that says where.
inline const char* fault_message(std::int64_t code) noexcept {
  switch (static_cast<fault>(code)) {
    case fault::integer_division_by_zero:
      return "integer division by zero in an expression (the integer divisor has a zero): divide floating-point "
             "tensors, or mask the zeros out first";
    case fault::integer_cast_out_of_range:
      return "cast to an integer type of a value that is NaN, infinite or outside that type's range (C++ leaves "
             "the result undefined; the pass gave 0 there): round, clamp or mask the values first, for example "
             "dp::cast<std::int64_t>(dp::clamp(x, lo, hi)) on values known to be finite";
    default:
      return "fault in an expression";
  }
}

/// The host's flag: the last fault a pass met since the last check (0: none).
inline std::atomic<std::int64_t>& host_fault() noexcept {
  static std::atomic<std::int64_t> code{0};
  return code;
}

}  // namespace dp::inline DP_ABI::detail
