// Reading a whole file into memory with errors that say why: the OS's reason (no such file, no
// permission, a directory, too many symbolic links) and a size bound, always as dp::io_error.
#pragma once

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <sys/stat.h>

#include <dp/core/error.hpp>

namespace dp::inline DP_ABI::detail {

/// The bytes of the file at `path`: at most `limit` (a longer file, or an endless one such as
/// /dev/zero, is an error) and, with `regular_only`, only a regular file (not a device or a pipe).
inline std::string read_bytes(const std::string& path, std::size_t limit = std::size_t{1} << 32,
                              bool regular_only = false) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  DP_CHECK(f != nullptr, io_error, "dp: cannot open '", path, "' for reading: ", std::strerror(errno));
  struct stat st {};
  if (::fstat(::fileno(f), &st) == 0) {
    const bool regular = S_ISREG(st.st_mode);
    if ((regular_only && !regular && !S_ISDIR(st.st_mode)) ||
        (regular && static_cast<std::uint64_t>(st.st_size) > limit)) {
      std::fclose(f);
      throw io_error(regular ? concat("dp: '", path, "' is larger than ", limit, " bytes")
                             : concat("dp: '", path, "' is not a regular file (a device or a pipe)"));
    }
  }
  std::string raw;
  char buf[1 << 16];
  for (;;) {
    const std::size_t n = std::fread(buf, 1, sizeof buf, f);
    raw.append(buf, n);
    if (n < sizeof buf) {
      const int err = std::ferror(f) ? errno : 0;
      std::fclose(f);
      DP_CHECK(err == 0, io_error, "dp: cannot read '", path, "': ", std::strerror(err));
      return raw;
    }
    if (raw.size() > limit) {
      std::fclose(f);
      throw io_error(concat("dp: '", path, "' is larger than ", limit, " bytes"));
    }
  }
}

}  // namespace dp::inline DP_ABI::detail
