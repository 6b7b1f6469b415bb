// The dp::error family and DP_CHECK. Every run-time failure of dp derives from dp::error and says
// what was wrong and what was expected.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

#include <dp/config.hpp>

namespace dp::inline DP_ABI {

/// Base of every exception dp throws.
class error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// Shapes that do not fit an operation; the message prints the shapes and the operation.
class shape_error : public error {
 public:
  using error::error;
};

/// Tensors on different devices in one operation, or a device this build cannot use.
class device_error : public error {
 public:
  using error::error;
};

/// An argument with a bad value (an axis out of range, a negative size, an unknown option).
class value_error : public error {
 public:
  using error::error;
};

/// Files that cannot be read or written, or whose contents are not what was expected.
class io_error : public error {
 public:
  using error::error;
};

/// A collective that failed or timed out, or a misuse of the training protocol.
class runtime_error : public error {
 public:
  using error::error;
};

namespace detail {

template <class... Args>
DP_NOINLINE std::string concat(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}

template <class E, class... Args>
[[noreturn]] DP_COLD void raise(const Args&... args) {
  throw E(concat(args...));
}

}  // namespace detail
}  // namespace dp::inline DP_ABI

/// Throws `Error` with the streamed message when `cond` is false. The message is built only on failure.
#define DP_CHECK(cond, Error, ...)             \
  do {                                         \
    if (!(cond)) [[unlikely]] {                \
      ::dp::detail::raise<Error>(__VA_ARGS__); \
    }                                          \
  } while (0)
