// Reading a data file that may be gzip-compressed (CSV, IDX): whole streams only, since zlib's gz*
// functions return what they could from a cut-short or corrupt file and ignore trailing bytes.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <new>
#include <string>

#include <zlib.h>

#include <dp/core/error.hpp>
#include <dp/core/file.hpp>

namespace dp::inline DP_ABI::data::detail {

/// Reads a whole file, decompressing gzip when it starts with gzip's magic bytes. A gzip stream
/// must be whole: one cut short, one with bytes after its last member, or corrupt data is an
/// io_error saying which (zlib's gz* functions return what they could and ignore trailing bytes,
/// so inflate is driven here). OS errors carry their reason.
inline std::string read_file(const std::string& path, std::size_t limit = std::size_t{1} << 32) {
  std::string raw = dp::detail::read_bytes(path, limit);  // not const: `return raw` moves it
  char buf[1 << 16];
  const auto* in = reinterpret_cast<const unsigned char*>(raw.data());
  if (raw.size() < 2 || in[0] != 0x1f || in[1] != 0x8b) {
    return raw;  // not gzip: the bytes as they are
  }
  z_stream z{};
  DP_CHECK(inflateInit2(&z, 15 + 16) == Z_OK, io_error, "dp: zlib could not start decompressing '", path, "'");
  // zlib's state is freed on every way out, a bad_alloc of `out` included.
  struct end_inflate {
    z_stream* z;
    ~end_inflate() { inflateEnd(z); }
  } const ending{&z};
  // The output is held whole and grows by copying: past the memory this process may use it would
  // end in the OOM killer, not an error (4 MB of gzipped zeros inflate to 4 GiB).
  const std::size_t bound = dp::detail::growing_limit(limit);
  const bool memory_bound = bound < limit;
  std::string out;
  z.next_in = const_cast<Bytef*>(in);
  z.avail_in = static_cast<uInt>(std::min<std::size_t>(raw.size(), UINT32_MAX));
  std::size_t fed = z.avail_in;
  auto fail = [&](const std::string& why) {
    throw io_error(dp::detail::concat("dp: cannot read '", path, "': ", why));
  };
  const auto no_memory = [&] {
    fail(dp::detail::concat("no memory to decompress it (", out.size(), " bytes decompressed so far)"));
  };
  for (;;) {
    z.next_out = reinterpret_cast<Bytef*>(buf);
    z.avail_out = sizeof buf;
    const int r = inflate(&z, Z_NO_FLUSH);
    bool within = false;
    try {
      within = dp::detail::append_within(out, buf, sizeof buf - z.avail_out, bound);
    } catch (const std::bad_alloc&) {
      no_memory();
    }
    if (!within) {
      fail(dp::detail::concat("it decompresses to more than ", bound,
                              memory_bound ? " bytes, half the memory this process may use (the output grows by "
                                             "copying)"
                                           : " bytes"));
    }
    const std::size_t at = fed - z.avail_in;  // compressed bytes consumed so far
    if (r == Z_STREAM_END) {
      if (at == raw.size()) {
        break;
      }
      if (raw.size() - at >= 2 && in[at] == 0x1f && in[at + 1] == 0x8b) {  // another gzip member
        inflateReset(&z);
        continue;
      }
      fail(dp::detail::concat("the gzip stream ends at byte ", at, " but the file has ", raw.size(),
                              " bytes (trailing data: a damaged or concatenated file)"));
    }
    if (r == Z_MEM_ERROR) {  // the machine's fault, not the file's
      no_memory();
    }
    if (r == Z_DATA_ERROR || r == Z_NEED_DICT) {
      fail(dp::detail::concat("corrupt gzip data near byte ", at, " of ", raw.size(), ": ",
                              z.msg != nullptr ? z.msg : "zlib error"));
    }
    if (z.avail_in == 0 && at < raw.size()) {  // a file over 4 GiB: feed the next part
      const std::size_t rest = std::min<std::size_t>(raw.size() - at, UINT32_MAX);
      z.next_in = const_cast<Bytef*>(in + at);
      z.avail_in = static_cast<uInt>(rest);
      fed = at + rest;
      continue;
    }
    if (r == Z_BUF_ERROR || (z.avail_in == 0 && z.avail_out != 0)) {
      fail(dp::detail::concat("the gzip stream is truncated: the file ends at byte ", raw.size(),
                              " before the stream does (a cut-short download or copy?)"));
    }
  }
  return out;
}

}  // namespace dp::inline DP_ABI::data::detail
