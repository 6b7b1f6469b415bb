// CSV datasets (plain or gzip-compressed, through zlib): numeric features and one integer label
// column. Malformed input is an io_error naming the file, the line (and column), and what was
// expected.
#pragma once

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <climits>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include <zlib.h>

#include <dp/core/error.hpp>
#include <dp/core/file.hpp>
#include <dp/data/dataset.hpp>
#include <dp/exec/factory.hpp>

namespace dp::inline DP_ABI::data {

struct csv_options {
  int label_column = -1;  ///< which column holds the class index; negative counts from the end
  bool header = false;    ///< skip the first line
  char delimiter = ',';
  bool allow_non_finite = false;  ///< keep nan and inf cells (rejected by default: they poison training)
};

namespace detail {

/// Reads a whole file, decompressing gzip when it starts with gzip's magic bytes. A gzip stream
/// must be whole: one cut short, one with bytes after its last member, or corrupt data is an
/// io_error saying which (zlib's gz* functions return what they could and ignore trailing bytes,
/// so inflate is driven here). OS errors carry their reason.
inline std::string read_file(const std::string& path, std::size_t limit = std::size_t{1} << 32) {
  const std::string raw = dp::detail::read_bytes(path, limit);
  char buf[1 << 16];
  const auto* in = reinterpret_cast<const unsigned char*>(raw.data());
  if (raw.size() < 2 || in[0] != 0x1f || in[1] != 0x8b) {
    return raw;  // not gzip: the bytes as they are
  }
  z_stream z{};
  DP_CHECK(inflateInit2(&z, 15 + 16) == Z_OK, io_error, "dp: zlib could not start decompressing '", path, "'");
  std::string out;
  z.next_in = const_cast<Bytef*>(in);
  z.avail_in = static_cast<uInt>(std::min<std::size_t>(raw.size(), UINT32_MAX));
  std::size_t fed = z.avail_in;
  auto fail = [&](const std::string& why) {
    inflateEnd(&z);
    throw io_error(dp::detail::concat("dp: cannot read '", path, "': ", why));
  };
  for (;;) {
    z.next_out = reinterpret_cast<Bytef*>(buf);
    z.avail_out = sizeof buf;
    const int r = inflate(&z, Z_NO_FLUSH);
    out.append(buf, sizeof buf - z.avail_out);
    if (out.size() > limit) {
      fail(dp::detail::concat("it decompresses to more than ", limit, " bytes"));
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
    if (r == Z_DATA_ERROR || r == Z_NEED_DICT || r == Z_MEM_ERROR) {
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
  inflateEnd(&z);
  return out;
}

inline std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) {
    s.remove_prefix(1);
  }
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) {
    s.remove_suffix(1);
  }
  return s;
}

}  // namespace detail

/// Parses CSV text (`source` names it in errors) into features [N, columns - 1] and labels [N].
inline tensor_dataset<float, std::int64_t> parse_csv(std::string_view text, const csv_options& o = {},
                                                     std::string_view source = "<csv>") {
  std::vector<float> features;
  std::vector<std::int64_t> labels;
  index_t columns = -1, line_no = 0, label_col = 0;
  std::size_t pos = 0;
  while (pos < text.size()) {
    std::size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) {
      end = text.size();
    }
    const std::string_view line = detail::trim(text.substr(pos, end - pos));
    pos = end + 1;
    ++line_no;
    if (line.empty() || (o.header && line_no == 1)) {
      continue;
    }
    // split
    index_t count = 1;
    for (char c : line) {
      count += c == o.delimiter;
    }
    if (columns < 0) {
      columns = count;
      DP_CHECK(columns >= 2, io_error, "dp: ", source, " line ", line_no, ": ", columns,
               " column(s), expected features and a label column");
      label_col = o.label_column < 0 ? columns + o.label_column : o.label_column;
      DP_CHECK(label_col >= 0 && label_col < columns, io_error, "dp: ", source, ": label column ", o.label_column,
               " does not exist in rows of ", columns, " columns");
    }
    DP_CHECK(count == columns, io_error, "dp: ", source, " line ", line_no, ": ", count, " columns, expected ", columns,
             " (as in the first row)");
    std::size_t f = 0;
    for (index_t c = 0; c < columns; ++c) {
      std::size_t g = line.find(o.delimiter, f);
      if (g == std::string_view::npos) {
        g = line.size();
      }
      const std::string_view cell = detail::trim(line.substr(f, g - f));
      f = g + 1;
      if (c == label_col) {
        std::int64_t v = 0;
        const auto r = std::from_chars(cell.data(), cell.data() + cell.size(), v);
        DP_CHECK(r.ec == std::errc() && r.ptr == cell.data() + cell.size() && v >= 0, io_error, "dp: ", source,
                 " line ", line_no, ", column ", c + 1, ": label '", cell,
                 "' is not a class index (a non-negative integer)");
        labels.push_back(v);
      } else {
        float v = 0;
        const auto r = std::from_chars(cell.data(), cell.data() + cell.size(), v);
        const bool whole = r.ptr == cell.data() + cell.size() && !cell.empty();
        DP_CHECK(r.ec != std::errc::result_out_of_range || !whole, io_error, "dp: ", source, " line ", line_no,
                 ", column ", c + 1, ": '", cell,
                 "' is outside float's range (finite magnitudes from about 1.2e-38 to ", "3.4e38, or 0)");
        DP_CHECK(r.ec == std::errc() && whole, io_error, "dp: ", source, " line ", line_no, ", column ", c + 1, ": '",
                 cell, "' is not a number");
        DP_CHECK(o.allow_non_finite || std::isfinite(v), io_error, "dp: ", source, " line ", line_no, ", column ",
                 c + 1, ": '", cell, "' is not finite (set csv_options::allow_non_finite to keep nan and inf)");
        features.push_back(v);
      }
    }
  }
  DP_CHECK(!labels.empty(), io_error, "dp: ", source, " holds no data rows");
  const index_t n = static_cast<index_t>(labels.size());
  return {from_vector<float>(features, {n, columns - 1}), from_vector<std::int64_t>(labels)};
}

/// Reads a CSV file (gzip-compressed when it ends in .gz or starts with the gzip magic).
inline tensor_dataset<float, std::int64_t> csv_dataset(const std::string& path, const csv_options& o = {}) {
  return parse_csv(detail::read_file(path), o, path);
}

}  // namespace dp::inline DP_ABI::data
