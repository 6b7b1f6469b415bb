// Whole files: reading one into memory, and replacing one atomically. Errors say why (the OS's
// reason: no such file, no permission, a directory, too many symbolic links; a size bound), always
// as dp::io_error.
#pragma once

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <dirent.h>
#include <fcntl.h>
#include <memory>
#include <new>
#include <signal.h>
#include <string>
#include <string_view>
#include <sys/stat.h>
#include <unistd.h>

#include <dp/core/error.hpp>
#include <dp/core/hash.hpp>

namespace dp::inline DP_ABI::detail {

/// The memory this process may use, in bytes: the machine's, or its control group's limit where
/// that is lower (a container's); 0 where the OS says neither.
inline std::uint64_t physical_memory() noexcept {
  const long pages = ::sysconf(_SC_PHYS_PAGES), page = ::sysconf(_SC_PAGE_SIZE);
  std::uint64_t memory =
      pages > 0 && page > 0 ? static_cast<std::uint64_t>(pages) * static_cast<std::uint64_t>(page) : 0;
  // cgroup v2, then v1 (which says "max", or a huge number, when there is no limit).
  for (const char* limit : {"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"}) {
    if (std::FILE* f = std::fopen(limit, "r")) {
      unsigned long long v = 0;
      const bool read = std::fscanf(f, "%llu", &v) == 1;
      std::fclose(f);
      if (read && v > 0 && (memory == 0 || v < memory)) {
        memory = v;
      }
      break;
    }
  }
  return memory;
}

/// Appends n bytes to `s`, which holds at most `limit`: false, and `s` unchanged, where they would
/// pass it. The capacity grows by doubling but never past the limit, so that a string near its limit
/// is not reallocated to twice it. (A new string takes the bytes: libstdc++'s reserve on the old one
/// would round a growth of less than double up to double.)
inline bool append_within(std::string& s, const char* bytes, std::size_t n, std::size_t limit) {
  if (s.size() > limit || n > limit - s.size()) {
    return false;
  }
  if (n > s.capacity() - s.size()) {
    std::string grown;
    grown.reserve(std::min(limit, std::max(s.size() + n, 2 * s.capacity())));
    grown.append(s);
    s.swap(grown);
  }
  s.append(bytes, n);
  return true;
}

/// The bound on a stream of unknown size held whole as it grows: each growth copies the string, so
/// the old block and the new one must fit together in the memory this process may use (past it the
/// OOM killer ends the process instead of an error).
inline std::size_t growing_limit(std::size_t limit) noexcept {
  const std::uint64_t memory = physical_memory();
  return memory != 0 && memory / 2 < limit ? static_cast<std::size_t>(memory / 2) : limit;
}

/// The bytes of the file at `path`: at most `limit` (a longer file, or an endless one such as
/// /dev/zero, is an error) and, with `regular_only`, only a regular file (not a device or a pipe).
inline std::string read_bytes(const std::string& path, std::size_t limit = std::size_t{1} << 32,
                              bool regular_only = false) {
  // Closed on every way out, a bad_alloc of `raw` included.
  struct closer {
    void operator()(std::FILE* f) const { std::fclose(f); }
  };
  // A named pipe read as a stream waits for its writer, as fopen does; where a regular file is
  // expected it is refused before anything opens it (opening it blocks until a writer comes).
  std::FILE* opened = nullptr;
  std::size_t expected = 0;  // a regular file's size, reserved at once: appending doubled the peak
  if (struct stat named{}; ::stat(path.c_str(), &named) == 0 && S_ISFIFO(named.st_mode)) {
    DP_CHECK(!regular_only, io_error, "dp: '", path, "' is not a regular file (a device or a pipe)");
    do {  // a signal while it waits for the writer interrupts the open: wait on
      opened = std::fopen(path.c_str(), "rb");
    } while (opened == nullptr && errno == EINTR);
  } else {
    // Without blocking all the same: the path may have become a pipe since the stat.
    const int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    DP_CHECK(fd >= 0, io_error, "dp: cannot open '", path, "' for reading: ", std::strerror(errno));
    struct stat st {};
    const bool known = ::fstat(fd, &st) == 0;
    const bool regular = known && S_ISREG(st.st_mode);
    if (known && ((regular_only && !regular && !S_ISDIR(st.st_mode)) ||
                  (regular && static_cast<std::uint64_t>(st.st_size) > limit))) {
      ::close(fd);
      throw io_error(regular ? concat("dp: '", path, "' is larger than ", limit, " bytes")
                             : concat("dp: '", path, "' is not a regular file (a device or a pipe)"));
    }
    // One larger than the machine's memory cannot be held: refused before a byte is read (a sparse
    // file of a terabyte read as zeros until the OOM killer ended the process).
    if (const std::uint64_t memory = physical_memory();
        regular && memory > 0 && static_cast<std::uint64_t>(st.st_size) > memory) {
      ::close(fd);
      throw io_error(concat("dp: '", path, "' is ", st.st_size, " bytes, more than the memory this process may use (",
                            memory, " bytes): dp reads such a file whole"));
    }
    if (regular) {
      expected = static_cast<std::size_t>(st.st_size);  // within limit (checked above)
    }
    ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    opened = ::fdopen(fd, "rb");
    if (opened == nullptr) {
      const int e = errno;
      ::close(fd);
      errno = e;
    }
  }
  const std::unique_ptr<std::FILE, closer> file(opened);
  std::FILE* const f = file.get();
  DP_CHECK(f != nullptr, io_error, "dp: cannot open '", path, "' for reading: ", std::strerror(errno));
  // A regular file's bytes are reserved at once; a pipe's or a device's grow as they come.
  const std::size_t stream_limit = expected != 0 ? limit : growing_limit(limit);
  std::string raw;
  try {  // no memory for the bytes (the reservation, or a pipe's growing string) is an io_error naming the file
    raw.reserve(expected);  // a file that grows meanwhile still reads to its end (the string grows)
    char buf[1 << 16];
    for (;;) {
      const std::size_t n = std::fread(buf, 1, sizeof buf, f);
      // Also for the last, short read (procfs and growing files pass fstat).
      if (!append_within(raw, buf, n, stream_limit)) {
        throw io_error(stream_limit < limit ? concat("dp: '", path, "' is larger than ", stream_limit,
                                                     " bytes, half the memory this process may use (dp reads it "
                                                     "whole, and a stream of unknown size grows by copying)")
                                            : concat("dp: '", path, "' is larger than ", limit, " bytes"));
      }
      if (n < sizeof buf) {
        if (std::ferror(f) && errno == EINTR) {  // a signal while a pipe's writer was slow: read on
          std::clearerr(f);
          continue;
        }
        const int err = std::ferror(f) ? errno : 0;
        DP_CHECK(err == 0, io_error, "dp: cannot read '", path, "': ", std::strerror(err));
        return raw;
      }
    }
  } catch (const std::bad_alloc&) {
    throw io_error(concat("dp: cannot read '", path, "': no memory to hold it (", expected, " bytes expected, ",
                          raw.size(), " read)"));
  }
}

/// Permission bits as ls and chmod write them: "0664".
inline std::string mode_text(mode_t mode) {
  char text[8];
  std::snprintf(text, sizeof text, "%04o", static_cast<unsigned>(mode & 07777));
  return text;
}

inline void write_all(int fd, const char* p, std::size_t n, const std::string& path) {
  while (n > 0) {
    const ssize_t w = ::write(fd, p, n);
    if (w < 0 && errno == EINTR) {
      continue;
    }
    // write() returning 0 sets no errno: the one left over from an earlier call would be reported.
    DP_CHECK(w != 0, io_error, "dp: writing '", path, "' failed: write() wrote 0 bytes of the ", n, " left");
    DP_CHECK(w > 0, io_error, "dp: writing '", path, "' failed: ", std::strerror(errno));
    p += w;
    n -= static_cast<std::size_t>(w);
  }
}

inline void remove_stale_temporaries(const std::string& dir, const std::string& name);

/// This machine, as a temporary's name carries it: a process id means something only on the host
/// that gave it (two hosts saving into one shared folder must not judge each other's writers). A
/// hash of the host name, 16 hex digits: a long name would push the file name past NAME_MAX. (Not
/// of the pid namespace too: a container restarted after a crash gets a new one, and would never
/// remove the temporary its crash left.)
inline const std::string& host_tag() {
  static const std::string tag = [] {
    char name[256] = {};
    if (::gethostname(name, sizeof name - 1) != 0) {
      name[0] = '\0';
    }
    char text[17];
    std::snprintf(text, sizeof text, "%016llx", static_cast<unsigned long long>(fnv1a(name)));
    return std::string(text);
  }();
  return tag;
}

/// Writes `content` to `path` atomically: a temporary file in the same folder, fsync, rename over
/// the destination, fsync of the folder. A crash leaves the old file or the new one, never a mix;
/// temporaries of writers that died are removed by the next write of the same path. A path that
/// names something other than a regular file is an error, not replaced.
inline void atomic_write(const std::string& given, const std::string& content) {
  DP_CHECK(!given.empty(), io_error, "dp: cannot write a file to an empty path");
  // A link is written through, as a plain write would: the rename replaces its target (written
  // next to it), and the link stays a link.
  std::string path = given;
  if (struct stat lst{}; ::lstat(given.c_str(), &lst) == 0 && S_ISLNK(lst.st_mode)) {
    if (char* target = ::realpath(given.c_str(), nullptr)) {
      path = target;
      std::free(target);
    } else {
      // A link to a file not made yet (latest -> run-42): the file is created where the link points,
      // as open(O_CREAT) would; the rename must not replace the link. A loop, or a link to a link to
      // nothing, is refused.
      const int err = errno;
      std::string to(4096, '\0');
      const ssize_t n = ::readlink(given.c_str(), to.data(), to.size());
      DP_CHECK(err == ENOENT && n > 0 && static_cast<std::size_t>(n) < to.size(), io_error, "dp: cannot write '", given,
               "': it is a symbolic link whose target cannot be resolved (", std::strerror(err),
               "); fix or remove the link");
      to.resize(static_cast<std::size_t>(n));
      const std::size_t slash = given.find_last_of('/');
      path = to.front() == '/' || slash == std::string::npos ? to : given.substr(0, slash + 1) + to;
      struct stat next {};
      DP_CHECK(::lstat(path.c_str(), &next) != 0, io_error, "dp: cannot write '", given,
               "': it is a symbolic link to '", path, "', itself a link to nothing; link to the file itself");
      const std::size_t end = path.find_last_of('/');
      const std::string folder = end == std::string::npos ? "." : path.substr(0, std::max<std::size_t>(end, 1));
      DP_CHECK(::stat(folder.c_str(), &next) == 0 && S_ISDIR(next.st_mode), io_error, "dp: cannot write '", given,
               "': it is a symbolic link to '", path, "', in a folder that does not exist; create '", folder, "'");
    }
  }
  // The rename would replace whatever the path names: a device, a pipe or a socket (even /dev/null)
  // would become a regular file. Only a regular file (or a link to one) is replaced, keeping its
  // permissions (a private checkpoint stays private).
  mode_t mode = 0644;
  bool replaces = false;
  if (struct stat st{}; ::stat(path.c_str(), &st) == 0) {
    DP_CHECK(S_ISREG(st.st_mode), io_error, "dp: cannot write '", given, "': it is ",
             S_ISDIR(st.st_mode) ? "a directory" : "not a regular file (a device, a pipe or a socket)",
             ", and only a regular file is replaced; give the path of a file");
    mode = st.st_mode & 0777;
    replaces = true;
  }
  static std::atomic<unsigned> counter{0};
  // A new file, never an existing one: a name someone planted (a link to another file, which the
  // write would truncate) is passed over for the next.
  std::string tmp;
  int fd = -1;
  do {
    tmp = path + ".tmp." + host_tag() + "." + std::to_string(::getpid()) + "." + std::to_string(counter++);
    // Made with the final permissions, less the umask's bits: never more open than the file it
    // replaces, not even before the fchmod (a private checkpoint's temporary was created readable
    // by everyone, and a reader who opened it then could read what followed).
    fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
  } while (fd < 0 && errno == EEXIST);
  DP_CHECK(fd >= 0, io_error, "dp: cannot create '", tmp, "': ", std::strerror(errno));
  try {
    if (replaces) {
      // The umask only takes bits away; the replaced file's are put back (a group-writable file
      // stays so). Where the filesystem fixes modes (vfat, CIFS) the new file has the old one's
      // already and nothing is changed; a failure otherwise would silently drop permissions.
      struct stat made {};
      DP_CHECK(::fstat(fd, &made) == 0 && ((made.st_mode & 0777) == mode || ::fchmod(fd, mode) == 0), io_error,
               "dp: cannot give '", tmp, "' the permissions of the file it replaces (", mode_text(mode),
               "): ", std::strerror(errno));
    }
    write_all(fd, content.data(), content.size(), tmp);
    DP_CHECK(::fsync(fd) == 0, io_error, "dp: fsync of '", tmp, "' failed: ", std::strerror(errno));
  } catch (...) {
    ::close(fd);
    ::unlink(tmp.c_str());
    throw;
  }
  ::close(fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const int e = errno;
    ::unlink(tmp.c_str());
    throw io_error(dp::detail::concat("dp: cannot rename '", tmp, "' to '", path, "': ", std::strerror(e)));
  }
  const auto slash = path.rfind('/');
  const std::string dir = slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash));
  if (const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC); dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
  remove_stale_temporaries(dir, slash == std::string::npos ? path : path.substr(slash + 1));
}

/// Removes `name.tmp.<host>.<pid>.<n>` files in `dir` left by writers on this host that died
/// mid-save (kill -9, power loss): those whose process no longer exists. A live writer's file is
/// kept, and so is another host's (its process ids are not this machine's to look up). Names
/// without a host (`name.tmp.<pid>.<n>`, from dp before they carried one) are taken as this host's.
inline void remove_stale_temporaries(const std::string& dir, const std::string& name) {
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) {
    return;
  }
  const std::string prefix = name + ".tmp.";
  while (const dirent* e = ::readdir(d)) {
    const std::string_view f = e->d_name;
    if (f.size() <= prefix.size() || f.substr(0, prefix.size()) != prefix) {
      continue;
    }
    // "<host>.<pid>.<n>", or "<pid>.<n>" from dp before temporaries named their host (taken as
    // this host's, as then).
    const std::string_view rest = f.substr(prefix.size());
    const std::size_t last = rest.rfind('.');
    if (last == std::string_view::npos || last == 0) {
      continue;
    }
    const std::size_t mid = rest.rfind('.', last - 1);
    if (mid != std::string_view::npos && rest.substr(0, mid) != host_tag()) {
      continue;
    }
    const std::size_t from = mid == std::string_view::npos ? 0 : mid + 1;
    long pid = 0;
    const auto [at, ec] = std::from_chars(rest.data() + from, rest.data() + last, pid);
    if (ec != std::errc() || at != rest.data() + last || pid <= 0 || pid == ::getpid()) {
      continue;
    }
    if (::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH) {
      ::unlink((dir + "/" + std::string(f)).c_str());
    }
  }
  ::closedir(d);
}

}  // namespace dp::inline DP_ABI::detail
