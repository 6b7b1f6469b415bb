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
#include <exception>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

#include <dp/core/error.hpp>
#include <dp/data/dataset.hpp>
#include <dp/data/gzip.hpp>
#include <dp/exec/factory.hpp>

namespace dp::inline DP_ABI::data {

struct csv_options {
  int label_column = -1;  ///< which column holds the class index; negative counts from the end
  bool header = false;    ///< skip the first line that is not blank
  char delimiter = ',';
  bool allow_non_finite = false;  ///< keep nan and inf cells (rejected by default: they poison training)
};

namespace detail {

/// `s` without the blanks around it (spaces, tabs, a line's '\r'), but a tab that delimits cells
/// stays: a tab-separated line's empty first or last cell would vanish and shift the columns.
/// (Space-separated files keep their trimmed ends, as before.)
inline std::string_view trim(std::string_view s, char delimiter) {
  const auto blank = [delimiter](char c) { return c == ' ' || (c == '\t' && delimiter != '\t'); };
  while (!s.empty() && blank(s.front())) {
    s.remove_prefix(1);
  }
  while (!s.empty() && (blank(s.back()) || s.back() == '\r')) {
    s.remove_suffix(1);
  }
  return s;
}

/// A number's text without one leading '+' (which std::from_chars refuses, and Python, NumPy and
/// pandas take); "+-1" keeps its '+' and stays refused.
inline std::string_view without_plus(std::string_view cell) {
  if (cell.size() >= 2 && cell[0] == '+' && cell[1] != '+' && cell[1] != '-') {
    cell.remove_prefix(1);
  }
  return cell;
}

enum class float_cell : std::uint8_t { ok, not_a_number, too_large };

/// The decimal exponent of a number's first significant digit ("0.05e-3": -5), for a number that
/// from_chars read whole; exponents saturate far beyond any type's range.
inline std::int64_t decimal_order(std::string_view t) {
  std::size_t i = t.front() == '-' ? 1 : 0;
  std::int64_t order = -1, zeros = 0;
  bool significant = false, point = false;
  for (; i < t.size() && t[i] != 'e' && t[i] != 'E'; ++i) {
    if (t[i] == '.') {
      point = true;
    } else if (significant || t[i] != '0') {
      significant = true;
      order += point ? 0 : 1;
    } else if (point) {
      ++zeros;  // zeros after the point, before the first significant digit
    }
  }
  if (!significant) {
    return INT64_MIN / 2;  // zero
  }
  if (order < 0) {
    order = -1 - zeros;
  }
  std::int64_t exponent = 0;
  if (i + 1 < t.size()) {
    const char* from = t.data() + i + 1 + (t[i + 1] == '+' ? 1 : 0);
    if (std::from_chars(from, t.data() + t.size(), exponent).ec != std::errc()) {
      exponent = t[i + 1] == '-' ? INT64_MIN / 4 : INT64_MAX / 4;  // past int64: saturated
    }
  }
  return order + std::clamp<std::int64_t>(exponent, INT64_MIN / 4, INT64_MAX / 4);
}

/// Reads a whole cell as the nearest float, as strtof and NumPy do: a magnitude below float's
/// smallest becomes 0 or a subnormal (std::from_chars calls that out of range), one above
/// FLT_MAX is too large.
inline float_cell parse_float(std::string_view cell, float& v) {
  const char* end = cell.data() + cell.size();
  const auto r = std::from_chars(cell.data(), end, v);
  if (cell.empty() || r.ptr != end) {
    return float_cell::not_a_number;
  }
  if (r.ec == std::errc()) {
    return float_cell::ok;
  }
  long double wide = 0;  // 80 bits on x86: 1e-50 is a normal number there
  const auto w = std::from_chars(cell.data(), end, wide);
  if (w.ec == std::errc()) {
    if (std::fabs(wide) > std::numeric_limits<float>::max()) {
      return float_cell::too_large;
    }
    v = static_cast<float>(wide);
    return float_cell::ok;
  }
  // Beyond long double too: tiny (1e-5000 rounds to 0) or huge, by the decimal order of magnitude.
  if (decimal_order(cell) < 0) {
    v = cell.front() == '-' ? -0.f : 0.f;
    return float_cell::ok;
  }
  return float_cell::too_large;
}

/// Reserves room for every row the text may still hold at once: doubling vectors held the values up
/// to twice, and the tensors made from them are a second copy. Past the memory this process may use
/// that ended in the OOM killer, not an error naming the file. A row of `columns` numbers takes at
/// least `columns` bytes, so this one and those in the `rest` bound the rows (blank lines do not
/// count, nor can a hostile count overflow).
inline void reserve_rows(std::string_view rest, std::size_t held, index_t columns, std::string_view source,
                         std::vector<float>& features, std::vector<std::int64_t>& labels) {
  const auto width = static_cast<std::uint64_t>(columns - 1);
  const std::uint64_t lines = static_cast<std::uint64_t>(std::count(rest.begin(), rest.end(), '\n')) + 1;
  const std::uint64_t rows = 1 + std::min(lines, rest.size() / static_cast<std::uint64_t>(columns) + 1);
  const std::uint64_t need = 2 * rows * (width * sizeof(float) + sizeof(std::int64_t));
  const std::uint64_t memory = dp::detail::physical_memory();
  DP_CHECK(memory == 0 || need <= memory - std::min<std::uint64_t>(memory, held), io_error, "dp: ", source, ": up to ",
           rows, " rows of ", columns, " columns need ", need,
           " bytes as numbers (the values, then their tensors) besides its ", held,
           " bytes of text, more than the memory this process may use (", memory, " bytes)");
  try {
    features.reserve(rows * width);
    labels.reserve(rows);
  } catch (const std::exception&) {  // bad_alloc, or length_error past what a vector may hold
    throw io_error(dp::detail::concat("dp: ", source, ": no memory for up to ", rows, " rows of ", columns,
                                      " columns (", need / 2, " bytes)"));
  }
}

}  // namespace detail

/// Parses CSV text (`source` names it in errors) into features [N, columns - 1] and labels [N].
inline tensor_dataset<float, std::int64_t> parse_csv(std::string_view text, const csv_options& o = {},
                                                     std::string_view source = "<csv>") {
  std::vector<float> features;
  std::vector<std::int64_t> labels;
  index_t columns = -1, line_no = 0, label_col = 0;
  bool header_pending = o.header;
  // A UTF-8 byte order mark (Excel's "CSV UTF-8") is no part of the first cell.
  if (text.starts_with("\xEF\xBB\xBF")) {
    text.remove_prefix(3);
  }
  std::size_t pos = 0;
  while (pos < text.size()) {
    std::size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) {
      end = text.size();
    }
    const std::string_view line = detail::trim(text.substr(pos, end - pos), o.delimiter);
    pos = end + 1;
    ++line_no;
    if (line.empty()) {
      continue;
    }
    if (header_pending) {  // the first line that is not blank
      header_pending = false;
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
      detail::reserve_rows(text.substr(std::min(pos, text.size())), text.size(), columns, source, features, labels);
    }
    DP_CHECK(count == columns, io_error, "dp: ", source, " line ", line_no, ": ", count, " columns, expected ", columns,
             " (as in the first row)");
    std::size_t f = 0;
    for (index_t c = 0; c < columns; ++c) {
      std::size_t g = line.find(o.delimiter, f);
      if (g == std::string_view::npos) {
        g = line.size();
      }
      const std::string_view cell = detail::trim(line.substr(f, g - f), o.delimiter);
      f = g + 1;
      const std::string_view number = detail::without_plus(cell);
      if (c == label_col) {
        std::int64_t v = 0;
        const auto r = std::from_chars(number.data(), number.data() + number.size(), v);
        DP_CHECK(r.ec == std::errc() && r.ptr == number.data() + number.size() && v >= 0, io_error, "dp: ", source,
                 " line ", line_no, ", column ", c + 1, ": label '", cell,
                 "' is not a class index (a non-negative integer)");
        labels.push_back(v);
      } else {
        float v = 0;
        const detail::float_cell r = detail::parse_float(number, v);
        DP_CHECK(r != detail::float_cell::too_large, io_error, "dp: ", source, " line ", line_no, ", column ", c + 1,
                 ": '", cell, "' is outside float's range (magnitudes up to about 3.4e38)");
        DP_CHECK(r == detail::float_cell::ok, io_error, "dp: ", source, " line ", line_no, ", column ", c + 1, ": '",
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

/// Reads a CSV file (gzip-compressed when it starts with the gzip magic, whatever its name).
inline tensor_dataset<float, std::int64_t> csv_dataset(const std::string& path, const csv_options& o = {}) {
  return parse_csv(detail::read_file(path), o, path);
}

}  // namespace dp::inline DP_ABI::data
