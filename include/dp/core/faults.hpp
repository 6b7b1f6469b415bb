// Faults an element-wise pass can only flag: input for which the hardware would trap (an integer
// division by zero) or C++ leaves the result undefined (a float cast to an integer type it does not
// fit). The pass goes on with 0 there; on the host the thread that ran the pass raises the fault
// after it (the pool's workers flag into that thread's word), a GPU kernel stores the code in its
// device's status word (core/device_status.hpp) and the host raises it at its next read. One code
// and one message per fault, for both.
#pragma once

#include <atomic>
#include <cstdint>

#include <dp/config.hpp>

namespace dp::inline DP_ABI::detail {

enum class fault : std::int64_t {
  none = 0,
  integer_division_by_zero = 1,
  integer_cast_out_of_range = 2,
  integer_narrowed_out_of_range = 3
};

/// What went wrong and what to do, for a message that says where.
inline const char* fault_message(std::int64_t code) noexcept {
  switch (static_cast<fault>(code)) {
    case fault::integer_division_by_zero:
      return "integer division by zero in an expression (the integer divisor has a zero): divide floating-point "
             "tensors, or mask the zeros out first";
    case fault::integer_cast_out_of_range:
      return "cast to an integer type of a value that is NaN, infinite or outside that type's range (C++ leaves "
             "the result undefined; the pass gave 0 there): replace NaN and clamp the values first, to bounds the "
             "float type holds exactly (dp::clamp(x, -0x1p62, 0x1p62) before dp::cast<std::int64_t>: 2^63 - 1 "
             "rounds up to 2^63, which int64 does not hold)";
    case fault::integer_narrowed_out_of_range:
      return "assignment of an integer value to an integer type that does not hold it (narrower, or of the other "
             "signedness: it would wrap; the pass gave 0 there): clamp the values first, or wrap them deliberately "
             "with dp::cast<T>(x)";
    default:
      return "fault in an expression";
  }
}

/// This thread's word: the last fault its passes met since its last check (0: none).
inline std::atomic<std::int64_t>& own_fault_word() noexcept {
  thread_local std::atomic<std::int64_t> code{0};
  return code;
}

/// Where the code running on this thread flags a fault: its own word, or, while it runs part of
/// another thread's pass (a pool task), that thread's, so that the pass's own check sees it and no
/// other thread's check does.
inline std::atomic<std::int64_t>*& fault_word() noexcept {
  thread_local std::atomic<std::int64_t>* word = &own_fault_word();
  return word;
}

/// Sends this thread's faults to `word` for the scope's lifetime.
class fault_word_scope {
 public:
  explicit fault_word_scope(std::atomic<std::int64_t>* word) noexcept : prev_(fault_word()) { fault_word() = word; }
  ~fault_word_scope() { fault_word() = prev_; }
  fault_word_scope(const fault_word_scope&) = delete;
  fault_word_scope& operator=(const fault_word_scope&) = delete;

 private:
  std::atomic<std::int64_t>* prev_;
};

}  // namespace dp::inline DP_ABI::detail
