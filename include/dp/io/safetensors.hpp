// safetensors files: an 8-byte little-endian header length, a JSON header naming each tensor's
// dtype, shape and byte range, then the data. PyTorch's safetensors.torch reads what dp writes and
// dp reads what it writes. Writes are atomic (temporary file, fsync, rename, fsync of the folder) and
// carry a CRC-32 of the data in the metadata, which loading verifies. Headers are untrusted input:
// every size and offset is checked before use.
#pragma once

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <dp/core/crc32.hpp>
#include <dp/core/error.hpp>
#include <dp/core/file.hpp>
#include <dp/core/tensor.hpp>
#include <dp/exec/factory.hpp>
#include <dp/io/json.hpp>

namespace dp::inline DP_ABI::io {

enum class dtype : std::uint8_t { f32, f64, i64, i32, u8, boolean };

template <class T>
constexpr dtype dtype_of() {
  if constexpr (std::is_same_v<T, float>) {
    return dtype::f32;
  } else if constexpr (std::is_same_v<T, double>) {
    return dtype::f64;
  } else if constexpr (std::is_same_v<T, std::int64_t>) {
    return dtype::i64;
  } else if constexpr (std::is_same_v<T, std::int32_t>) {
    return dtype::i32;
  } else if constexpr (std::is_same_v<T, std::uint8_t>) {
    return dtype::u8;
  } else {
    static_assert(std::is_same_v<T, bool>, "dp: safetensors holds float, double, int64, int32, uint8 or bool");
    return dtype::boolean;
  }
}
/// d's index in the tables below; a value cast from outside the enumerators is an error.
inline int dtype_index(dtype d) {
  const int i = static_cast<int>(d);
  DP_CHECK(i <= static_cast<int>(dtype::boolean), value_error, "dp: safetensors: dtype value ", i,
           " is none of F32, F64, I64, I32, U8, BOOL");
  return i;
}
inline const char* dtype_name(dtype d) {
  constexpr const char* names[] = {"F32", "F64", "I64", "I32", "U8", "BOOL"};
  return names[dtype_index(d)];
}
inline std::size_t dtype_size(dtype d) {
  constexpr std::size_t sizes[] = {4, 8, 8, 4, 1, 1};
  return sizes[dtype_index(d)];
}
inline std::optional<dtype> parse_dtype(std::string_view s) {
  for (int i = 0; i < 6; ++i) {
    if (s == dtype_name(static_cast<dtype>(i))) {
      return static_cast<dtype>(i);
    }
  }
  return std::nullopt;
}

namespace detail {
/// A CRC as the header stores it: eight lowercase hex digits.
inline std::string crc_text(std::uint32_t c) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "%08x", static_cast<unsigned>(c));
  return buf;
}
/// The bytes a tensor of `shape` and `type` holds, or nothing when no file of the format's size
/// could hold it: an extent negative or of 2^40 or more, or non-zero extents multiplying past 2^48
/// (their product bounds every partial product, so a zero extent cannot hide huge others). The
/// reader, the entries it hands out and the writer apply the same rule.
inline std::optional<std::uint64_t> stored_bytes(const dp::shape& shape, dtype type) {
  std::uint64_t count = 1, extent = 1;
  for (int i = 0; i < shape.rank(); ++i) {
    if (shape[i] < 0) {
      return std::nullopt;
    }
    const auto x = static_cast<std::uint64_t>(shape[i]);
    if (x >= (std::uint64_t{1} << 40) || (x != 0 && extent > (std::uint64_t{1} << 48) / x)) {
      return std::nullopt;
    }
    count *= x;
    extent *= std::max<std::uint64_t>(x, 1);
  }
  return count * dtype_size(type);
}

/// "its first byte is ' ' (32)", for an error: the character where printable, always its value.
inline std::string byte_text(char c) {
  const int v = static_cast<unsigned char>(c);
  return v >= 0x20 && v < 0x7f ? dp::detail::concat("its first byte is '", c, "' (", v, ")")
                               : dp::detail::concat("its first byte is ", v);
}

/// Names and metadata go into the JSON header, which readers require to be UTF-8.
inline void require_utf8(std::string_view s, const char* what) {
  const std::size_t bad = json::first_invalid_utf8(s);
  DP_CHECK(bad == std::string_view::npos, value_error, "dp: safetensors: ", what, " '", s.substr(0, bad),
           "...' is not valid UTF-8 at byte ", bad, " (the header is JSON, which readers require to be UTF-8)");
}

/// The first name `names` holds twice, if any (sorting: a header may hold a million entries).
inline const std::string* first_repeat(std::vector<const std::string*> names) {
  std::sort(names.begin(), names.end(), [](const std::string* a, const std::string* b) { return *a < *b; });
  const auto at = std::adjacent_find(names.begin(), names.end(),
                                     [](const std::string* a, const std::string* b) { return *a == *b; });
  return at == names.end() ? nullptr : *at;
}
}  // namespace detail

/// One tensor of a file: name, dtype, shape and its byte range within the data section.
struct tensor_entry {
  std::string name;
  dtype type;
  dp::shape shape;
  std::uint64_t begin, end;
};

/// A CRC-32 of everything a header says besides its CRCs: every tensor's name, dtype, shape and
/// offsets (by name) and every metadata pair (by key). A checkpoint's epoch, step counters and
/// seeds live in the metadata, so a flipped byte there is found like one in the data.
inline std::string header_crc(std::vector<tensor_entry> tensors,
                              std::vector<std::pair<std::string, std::string>> meta) {
  std::sort(tensors.begin(), tensors.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  std::sort(meta.begin(), meta.end());
  std::string text;
  for (const auto& t : tensors) {
    text += t.name + '\0' + dtype_name(t.type) + '\0';
    for (int i = 0; i < t.shape.rank(); ++i) {
      text += std::to_string(t.shape[i]) + ',';
    }
    text += '\0' + std::to_string(t.begin) + ',' + std::to_string(t.end) + '\n';
  }
  for (const auto& [k, v] : meta) {
    if (k != "dp.crc32" && k != "dp.header_crc32") {
      text += k + '\0' + v + '\n';
    }
  }
  return detail::crc_text(dp::detail::crc32_of(text));
}

struct header {
  std::vector<tensor_entry> tensors;
  std::vector<std::pair<std::string, std::string>> metadata;
  std::uint64_t data_start = 0;  // byte offset of the data section in the file

  const tensor_entry* find(std::string_view name) const {
    for (const auto& t : tensors) {
      if (t.name == name) {
        return &t;
      }
    }
    return nullptr;
  }
  const std::string* meta(std::string_view key) const {
    for (const auto& [k, v] : metadata) {
      if (k == key) {
        return &v;
      }
    }
    return nullptr;
  }
};

inline constexpr std::uint64_t max_header_bytes = 100'000'000;
/// The most JSON values a header may hold: what the reader's parser takes.
inline constexpr std::uint64_t max_header_values = json::parser::max_values;

/// Parses and validates the header of a file of `file_size` bytes whose beginning is `bytes`.
inline header parse_header(std::string_view bytes, std::uint64_t file_size, std::string_view source) {
  DP_CHECK(bytes.size() >= 8 && file_size >= 8, io_error, "dp: ", source, ": truncated: ", file_size,
           " bytes, a safetensors file starts with an 8-byte header length");
  std::uint64_t n = 0;
  for (int i = 7; i >= 0; --i) {
    n = (n << 8) | static_cast<unsigned char>(bytes[static_cast<std::size_t>(i)]);
  }
  DP_CHECK(n <= max_header_bytes, io_error, "dp: ", source, ": corrupt header: its length field says ", n,
           " bytes (the format allows at most ", max_header_bytes, ")");
  DP_CHECK(n <= file_size - 8 && n <= bytes.size() - 8, io_error, "dp: ", source, ": truncated: the header needs ", n,
           " bytes but the file has ", file_size - 8, " after the length field");
  // The format puts the JSON object's '{' at byte 8, padding only at its end: a header that starts
  // otherwise (leading spaces) is read by some readers and refused by others, so it is refused here.
  DP_CHECK(n > 0 && bytes[8] == '{', io_error, "dp: ", source,
           ": corrupt header: not a JSON object starting at byte 8 (",
           n == 0 ? std::string("the header is empty") : detail::byte_text(bytes[8]),
           "; the format requires '{' right after the 8-byte length)");
  header h;
  h.data_start = 8 + n;
  const json::value root = json::parser(bytes.substr(8, n), source, 8).parse();
  DP_CHECK(root.type == json::value::kind::object, io_error, "dp: ", source, ": corrupt header: not a JSON object");
  const std::uint64_t data_size = file_size - h.data_start;
  bool seen_metadata = false;
  for (const auto& [name, v] : root.members) {
    if (name == "__metadata__") {
      DP_CHECK(!seen_metadata, io_error, "dp: ", source, ": the header holds __metadata__ twice");
      seen_metadata = true;
      DP_CHECK(v.type == json::value::kind::object, io_error, "dp: ", source, ": __metadata__ must be an object");
      for (const auto& [k, m] : v.members) {
        DP_CHECK(m.type == json::value::kind::string, io_error, "dp: ", source, ": metadata '", k,
                 "' must be a string");
        h.metadata.emplace_back(k, m.text);
      }
      continue;
    }
    DP_CHECK(v.type == json::value::kind::object, io_error, "dp: ", source, ": entry '", name, "' is not an object");
    // A field given twice: readers disagree on which counts (Python's json keeps the last, find() the first).
    for (const char* field : {"dtype", "shape", "data_offsets"}) {
      const auto given =
          std::count_if(v.members.begin(), v.members.end(), [&](const auto& m) { return m.first == field; });
      DP_CHECK(given <= 1, io_error, "dp: ", source, ": entry '", name, "' gives ", field, " ", given,
               " times; expected once");
    }
    const json::value *dt = v.find("dtype"), *sh = v.find("shape"), *off = v.find("data_offsets");
    DP_CHECK(dt && sh && off && dt->type == json::value::kind::string && sh->type == json::value::kind::array &&
                 off->type == json::value::kind::array && off->items.size() == 2,
             io_error, "dp: ", source, ": entry '", name, "' needs dtype, shape and two data_offsets");
    const auto type = parse_dtype(dt->text);
    DP_CHECK(type.has_value(), io_error, "dp: ", source, ": entry '", name, "' has dtype '", dt->text,
             "' (dp reads F32, F64, I64, I32, U8, BOOL)");
    // Errors say the file and the entry, and what the value was. (A named copy of the binding:
    // clang before 16 cannot capture a structured binding.)
    const std::string& entry = name;
    const auto whole = [&source, &entry](const json::value& x, const char* what) {
      std::uint64_t v = 0;
      const char* end = x.text.data() + x.text.size();
      const auto [at, ec] = std::from_chars(x.text.data(), end, v);
      DP_CHECK(x.type == json::value::kind::number && ec == std::errc() && at == end, io_error, "dp: ", source,
               ": entry '", entry, "': ", what, " '", x.text, "' must be a non-negative integer below 2^64");
      return v;
    };
    tensor_entry e{name, *type, {}, whole(off->items[0], "data_offsets[0]"), whole(off->items[1], "data_offsets[1]")};
    DP_CHECK(sh->items.size() <= static_cast<std::size_t>(max_rank), io_error, "dp: ", source, ": entry '", name,
             "' has ", sh->items.size(), " dimensions (at most ", max_rank, ")");
    for (const auto& d : sh->items) {
      const std::uint64_t x = whole(d, "a shape entry");
      DP_CHECK(x < (std::uint64_t{1} << 40), io_error, "dp: ", source, ": entry '", name, "' has an extent of ", x,
               " (the format's files hold extents below 2^40)");
      e.shape.push_back(static_cast<index_t>(x));
    }
    const std::optional<std::uint64_t> bytes = detail::stored_bytes(e.shape, e.type);
    DP_CHECK(bytes.has_value(), io_error, "dp: ", source, ": entry '", name, "' has an implausible shape ", e.shape,
             " (its non-zero dimensions multiply to more than 2^48)");
    DP_CHECK(e.begin <= e.end && e.end <= data_size, io_error, "dp: ", source, ": entry '", name, "' spans bytes [",
             e.begin, ", ", e.end, ") but the data section has ", data_size, " bytes (truncated file?)");
    DP_CHECK(e.end - e.begin == *bytes, io_error, "dp: ", source, ": entry '", name, "' (", dt->text, ", shape ",
             e.shape, ") needs ", *bytes, " bytes but spans ", e.end - e.begin);
    h.tensors.push_back(std::move(e));
  }
  std::vector<const std::string*> names, keys;
  for (const auto& t : h.tensors) {
    names.push_back(&t.name);
  }
  for (const auto& [k, v] : h.metadata) {
    keys.push_back(&k);
  }
  const std::string* twice = detail::first_repeat(std::move(names));
  DP_CHECK(twice == nullptr, io_error, "dp: ", source, ": entry '", twice ? *twice : "", "' appears twice");
  twice = detail::first_repeat(std::move(keys));
  DP_CHECK(twice == nullptr, io_error, "dp: ", source, ": metadata key '", twice ? *twice : "", "' appears twice");
  // The data section is covered exactly, without overlaps or holes (the format's rule).
  std::vector<std::pair<std::uint64_t, std::uint64_t>> ranges;
  for (const auto& t : h.tensors) {
    ranges.emplace_back(t.begin, t.end);
  }
  std::sort(ranges.begin(), ranges.end());
  std::uint64_t at = 0;
  for (const auto& [b, e] : ranges) {
    DP_CHECK(b == at, io_error, "dp: ", source, ": corrupt header: tensor data ", b < at ? "overlaps" : "leaves a hole",
             " at byte ", std::min(b, at), " of the data section");
    at = e;
  }
  DP_CHECK(at == data_size, io_error, "dp: ", source, ": the data section has ", data_size,
           " bytes but the tensors cover ", at, " (truncated or padded file)");
  return h;
}

namespace detail {
/// The positions of `t`'s entries sorted by name, for lookups by binary search: header::find is
/// linear, and a model of M tensors checked against a file of M took M^2 string compares.
inline std::vector<std::size_t> name_order(const std::vector<tensor_entry>& t) {
  std::vector<std::size_t> order(t.size());
  for (std::size_t i = 0; i < order.size(); ++i) {
    order[i] = i;
  }
  std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return t[a].name < t[b].name; });
  return order;
}
/// The entry named `name` through name_order's `order` of `t`, or null.
inline const tensor_entry* find_in_order(const std::vector<tensor_entry>& t, const std::vector<std::size_t>& order,
                                         std::string_view name) {
  const auto at = std::lower_bound(order.begin(), order.end(), name,
                                   [&](std::size_t i, std::string_view n) { return t[i].name < n; });
  return at != order.end() && t[*at].name == name ? &t[*at] : nullptr;
}
}  // namespace detail

/// A whole file in memory, validated.
class reader {
 public:
  /// Reads and validates `path`.
  explicit reader(const std::string& path)
      : source_(path), bytes_(dp::detail::read_bytes(path, std::size_t{1} << 40, true)) {
    h_ = parse_header(bytes_, bytes_.size(), source_);
    order_ = detail::name_order(h_.tensors);
  }
  /// Validates bytes already in memory (fuzzing, tests).
  reader(std::string bytes, std::string source) : source_(std::move(source)), bytes_(std::move(bytes)) {
    h_ = parse_header(bytes_, bytes_.size(), source_);
    order_ = detail::name_order(h_.tensors);
  }

  const header& info() const noexcept { return h_; }
  /// The entry named `name`, or null (info().find's answer, by binary search).
  const tensor_entry* find(std::string_view name) const { return detail::find_in_order(h_.tensors, order_, name); }
  const std::string& source() const noexcept { return source_; }

  /// The stored CRC-32s of the header and the data (when the writer recorded them) match. A file
  /// of dp's own format (a checkpoint) must also require them: one deleted skips its check.
  void verify() const {
    // dp writes both or neither, and the header's CRC leaves both keys out: a deleted data CRC (the
    // pair blanked) would let any change to the data through.
    DP_CHECK(!h_.meta("dp.header_crc32") || h_.meta("dp.crc32"), io_error, "dp: ", source_,
             ": the header records its CRC-32 (dp.header_crc32) but not its data's (dp.crc32), which dp writes with "
             "it: the file was damaged or edited, and its data cannot be checked (a file whose data was changed on "
             "purpose: save it again with dp, or remove dp.header_crc32 too)");
    if (const std::string* want = h_.meta("dp.header_crc32")) {
      const std::string got = header_crc(h_.tensors, h_.metadata);
      DP_CHECK(*want == got, io_error, "dp: ", source_, ": the header is corrupt: its CRC-32 is ", got,
               " but the header recorded ", *want, " (a changed name, shape, offset or metadata value)");
    }
    if (const std::string* want = h_.meta("dp.crc32")) {
      const std::string got = detail::crc_text(crc());
      DP_CHECK(*want == got, io_error, "dp: ", source_, ": the data is corrupt: its CRC-32 is ", got,
               " but the header recorded ", *want);
    }
  }
  std::uint32_t crc() const { return dp::detail::crc32_of(std::string_view(bytes_).substr(h_.data_start)); }

  /// An entry's bytes as stored (little-endian values of its dtype). `e` is one of info()'s entries;
  /// any other (another file's, one made by hand) must describe bytes this file holds.
  std::string_view raw(const tensor_entry& e) const {
    const std::uint64_t data_size = bytes_.size() - h_.data_start;
    const std::optional<std::uint64_t> want = detail::stored_bytes(e.shape, e.type);
    DP_CHECK(want.has_value(), io_error, "dp: ", source_, ": entry '", e.name, "' has shape ", e.shape,
             ", which no file can hold");
    DP_CHECK(e.begin <= e.end && e.end <= data_size && e.end - e.begin == *want, io_error, "dp: ", source_, ": entry '",
             e.name, "' (", dtype_name(e.type), ", shape ", e.shape, ", bytes [", e.begin, ", ", e.end,
             ")) does not describe data of this file (", data_size, " bytes): use an entry of this reader's info()");
    return {bytes_.data() + h_.data_start + e.begin, static_cast<std::size_t>(*want)};
  }

  /// A host copy of an entry's values (the entry's dtype must be T's).
  template <class T>
  tensor<T> read(const tensor_entry& e) const {
    DP_CHECK(e.type == dtype_of<T>(), io_error, "dp: ", source_, ": '", e.name, "' is ", dtype_name(e.type),
             ", expected ", dtype_name(dtype_of<T>()));
    const char* src = raw(e).data();
    if constexpr (std::is_same_v<T, bool>) {  // any other byte would make an invalid bool
      for (std::uint64_t i = 0; i < e.end - e.begin; ++i) {
        DP_CHECK(src[i] == 0 || src[i] == 1, io_error, "dp: ", source_, ": '", e.name, "' is BOOL but its byte ", i,
                 " (file offset ", h_.data_start + e.begin + i, ") is ",
                 static_cast<int>(static_cast<unsigned char>(src[i])), ", expected 0 or 1");
      }
    }
    tensor<T> t = empty<T>(e.shape);
    std::memcpy(t.data(), src, e.end - e.begin);
    return t;
  }

 private:
  std::string source_, bytes_;
  header h_;
  std::vector<std::size_t> order_;  // h_'s entries by name
};

/// A tensor to write: its name, dtype, shape and host bytes.
struct entry {
  std::string name;
  dtype type;
  dp::shape shape;
  std::vector<char> bytes;
};

namespace detail {
/// Refuses a header of `bytes` (exactly, or at least) past max_header_bytes, naming its longest part.
inline void check_header_bytes(std::uint64_t bytes, bool exact, const std::vector<entry>& entries,
                               const std::vector<std::pair<std::string, std::string>>& metadata) {
  if (bytes <= max_header_bytes) {
    return;
  }
  std::string longest;
  std::size_t most = 0;
  for (const auto& e : entries) {
    if (e.name.size() > most) {
      most = e.name.size();
      longest = "the name of entry '" + e.name.substr(0, 40) + (e.name.size() > 40 ? "...'" : "'");
    }
  }
  for (const auto& [k, v] : metadata) {
    if (v.size() > most) {
      most = v.size();
      longest = "metadata '" + k + "'";
    }
  }
  throw value_error(dp::detail::concat("dp: safetensors: the header would be ", exact ? "" : "at least ", bytes,
                                       " bytes, but readers take at most ", max_header_bytes, " (its longest part is ",
                                       longest, ", ", most, " bytes); keep names and metadata short"));
}
}  // namespace detail

template <class T>
entry make_entry(std::string name, const tensor<T>& t) {
  DP_CHECK(t.defined(), value_error, "dp: safetensors: make_entry: the tensor for entry '", name,
           "' is undefined (it holds no values to write)");
  const tensor<T> host = t.to(dp::cpu()).contiguous();
  entry e{std::move(name), dtype_of<T>(), host.shape(),
          std::vector<char>(static_cast<std::size_t>(host.numel()) * sizeof(T))};
  if (!e.bytes.empty()) {
    std::memcpy(e.bytes.data(), host.data(), e.bytes.size());
  }
  return e;
}

/// The bytes of a safetensors file holding `entries` (sorted by name, so the same tensors always give
/// the same bytes) and `metadata`, plus a CRC-32 of the data.
/// Refuses what would make a file that cannot be read back: bytes that do not match the dtype and
/// shape, a negative extent, a name given twice or reserved (`__metadata__`), a metadata key given
/// twice or one of the CRC keys dp writes itself, a header longer than readers take (max_header_bytes)
/// or of more JSON values than they parse (max_header_values).
inline std::string encode(std::vector<entry> entries, std::vector<std::pair<std::string, std::string>> metadata) {
  std::sort(entries.begin(), entries.end(), [](const entry& a, const entry& b) { return a.name < b.name; });
  std::vector<const std::string*> names, keys;
  for (const auto& e : entries) {
    DP_CHECK(e.name != "__metadata__", value_error,
             "dp: safetensors: '__metadata__' is the format's metadata key, not a tensor name");
    detail::require_utf8(e.name, "entry name");
    const std::optional<std::uint64_t> want = detail::stored_bytes(e.shape, e.type);
    DP_CHECK(want.has_value(), value_error, "dp: safetensors: entry '", e.name, "' has shape ", e.shape,
             " (a file holds extents from 0 to below 2^40 whose non-zero ones multiply to at most 2^48)");
    DP_CHECK(e.bytes.size() == *want, value_error, "dp: safetensors: entry '", e.name, "' (", dtype_name(e.type),
             ", shape ", e.shape, ") needs ", *want, " bytes but holds ", e.bytes.size());
    names.push_back(&e.name);
  }
  for (const auto& [k, v] : metadata) {
    DP_CHECK(k != "dp.crc32" && k != "dp.header_crc32", value_error, "dp: safetensors: metadata key '", k,
             "' is dp's own (it writes the file's CRCs there)");
    detail::require_utf8(k, "metadata key");
    detail::require_utf8(v, "metadata value");
    keys.push_back(&k);
  }
  const std::string* twice = detail::first_repeat(std::move(names));
  DP_CHECK(twice == nullptr, value_error, "dp: safetensors: entry '", twice ? *twice : "", "' is given twice");
  twice = detail::first_repeat(std::move(keys));
  DP_CHECK(twice == nullptr, value_error, "dp: safetensors: metadata key '", twice ? *twice : "", "' is given twice");
  // The JSON values a reader parses: the root object; per entry its object, dtype, shape array,
  // extents, offsets array and two offsets; the metadata object and its values (the two CRCs included).
  std::uint64_t values = 2 + metadata.size() + 2;
  for (const auto& e : entries) {
    values += 6 + static_cast<std::uint64_t>(e.shape.rank());
  }
  DP_CHECK(values <= max_header_values, value_error, "dp: safetensors: the header would hold ", values,
           " JSON values (", entries.size(), " entries, ", metadata.size(),
           " metadata pairs), but readers parse at most ", max_header_values);
  // A lower bound first (quoting only adds): a header far too long is refused before it is built.
  std::uint64_t least = 0;
  for (const auto& e : entries) {
    least += e.name.size();
  }
  for (const auto& [k, v] : metadata) {
    least += k.size() + v.size();
  }
  detail::check_header_bytes(least, false, entries, metadata);
  std::string data;
  std::string head = "{";
  std::uint64_t at = 0;
  for (const auto& e : entries) {
    head += json::quote(e.name) + ":{\"dtype\":\"" + dtype_name(e.type) + "\",\"shape\":[";
    for (int i = 0; i < e.shape.rank(); ++i) {
      head += (i ? "," : "") + std::to_string(e.shape[i]);
    }
    head += "],\"data_offsets\":[" + std::to_string(at) + "," + std::to_string(at + e.bytes.size()) + "]},";
    at += e.bytes.size();
    data.append(e.bytes.data(), e.bytes.size());
  }
  std::vector<tensor_entry> table;
  at = 0;
  for (const auto& e : entries) {
    table.push_back({e.name, e.type, e.shape, at, at + e.bytes.size()});
    at += e.bytes.size();
  }
  metadata.emplace_back("dp.header_crc32", header_crc(std::move(table), metadata));
  metadata.emplace_back("dp.crc32", detail::crc_text(dp::detail::crc32_of(data)));
  head += "\"__metadata__\":{";
  for (std::size_t i = 0; i < metadata.size(); ++i) {
    head += (i ? "," : "") + json::quote(metadata[i].first) + ":" + json::quote(metadata[i].second);
  }
  head += "}}";
  while ((8 + head.size()) % 8 != 0) {  // the data section starts 8-byte aligned
    head += ' ';
  }
  detail::check_header_bytes(head.size(), true, entries, metadata);
  std::string out(8, '\0');
  std::uint64_t n = head.size();
  for (int i = 0; i < 8; ++i) {
    out[static_cast<std::size_t>(i)] = static_cast<char>((n >> (8 * i)) & 0xff);
  }
  return out + head + data;
}

/// Writes tensors to a safetensors file, atomically.
inline void write(const std::string& path, std::vector<entry> entries,
                  std::vector<std::pair<std::string, std::string>> metadata = {}) {
  dp::detail::atomic_write(path, encode(std::move(entries), std::move(metadata)));
}

}  // namespace dp::inline DP_ABI::io
