// A small JSON reader and writer for safetensors headers. It parses untrusted input: depth and size
// are bounded, numbers are checked, and every error says where it happened.
#pragma once

#include <charconv>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <dp/core/error.hpp>

namespace dp::inline DP_ABI::io::json {

struct value {
  enum class kind : std::uint8_t { null, boolean, number, string, array, object };
  kind type = kind::null;
  bool b = false;
  std::string text;                                    // a string's contents, or a number's spelling
  std::vector<value> items;                            // array
  std::vector<std::pair<std::string, value>> members;  // object, in document order

  // User-provided, so that std::pair<std::string, value> can be instantiated inside this class:
  // with an implicit one, clang 14 + libstdc++ 12 reject the header (a recursive instantiation).
  value() noexcept {}

  const value* find(std::string_view key) const {
    for (const auto& [k, v] : members) {
      if (k == key) {
        return &v;
      }
    }
    return nullptr;
  }
};

/// The offset of the first byte of `s` that does not start or continue a well-formed UTF-8 sequence
/// (RFC 3629: no overlong forms, no surrogates, nothing above U+10FFFF); npos when `s` is valid.
inline std::size_t first_invalid_utf8(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size()) {
    const auto b = static_cast<unsigned char>(s[i]);
    if (b < 0x80) {
      ++i;
      continue;
    }
    // The sequence's length and the range of its second byte (the first continuation).
    std::size_t n = 0;
    unsigned char lo = 0x80, hi = 0xBF;
    if (b >= 0xC2 && b <= 0xDF) {
      n = 2;
    } else if (b >= 0xE0 && b <= 0xEF) {
      n = 3;
      lo = b == 0xE0 ? 0xA0 : 0x80;
      hi = b == 0xED ? 0x9F : 0xBF;
    } else if (b >= 0xF0 && b <= 0xF4) {
      n = 4;
      lo = b == 0xF0 ? 0x90 : 0x80;
      hi = b == 0xF4 ? 0x8F : 0xBF;
    } else {
      return i;
    }
    if (s.size() - i < n) {
      return i;
    }
    for (std::size_t k = 1; k < n; ++k) {
      const auto c = static_cast<unsigned char>(s[i + k]);
      if (c < (k == 1 ? lo : 0x80) || c > (k == 1 ? hi : 0xBF)) {
        return i;
      }
    }
    i += n;
  }
  return std::string_view::npos;
}

class parser {
 public:
  // Each parsed value costs about 100 bytes of memory: a header of a million values (a model of
  // 100,000+ tensors) stays near 100 MB whatever the header's length field claims.
  static constexpr std::size_t max_values = 1'000'000;

  /// `s` starts at byte `offset` of `source` (8 in a safetensors file): errors name the file's byte.
  parser(std::string_view s, std::string_view source, std::size_t offset = 0)
      : s_(s), source_(source), offset_(offset) {}

  value parse() {
    // JSON text is UTF-8 (RFC 8259), and the safetensors reader refuses a header that is not.
    if (const std::size_t bad = first_invalid_utf8(s_); bad != std::string_view::npos) {
      i_ = bad;
      fail("not valid UTF-8 (JSON text, a safetensors header included, must be UTF-8)");
    }
    value v = parse_value(0);
    skip_ws();
    if (i_ != s_.size()) {
      fail("unexpected characters after the JSON value");
    }
    return v;
  }

 private:
  static constexpr int max_depth = 32;

  [[noreturn]] void fail(std::string_view why) const {
    throw io_error(dp::detail::concat("dp: ", source_, ": malformed header at byte ", offset_ + i_, ": ", why));
  }
  void skip_ws() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\n' || s_[i_] == '\r' || s_[i_] == '\t')) {
      ++i_;
    }
  }
  char peek() {
    skip_ws();
    if (i_ >= s_.size()) {
      fail("unexpected end");
    }
    return s_[i_];
  }
  void expect(char c) {
    if (peek() != c) {
      fail(dp::detail::concat("expected '", c, "'"));
    }
    ++i_;
  }

  value parse_value(int depth) {
    if (depth > max_depth) {
      fail("nested too deeply");
    }
    if (++values_ > max_values) {
      fail(dp::detail::concat("more than ", max_values, " values (a safetensors header names tensors, not data)"));
    }
    const char c = peek();
    value v;
    if (c == '{') {
      ++i_;
      v.type = value::kind::object;
      if (peek() == '}') {
        ++i_;
        return v;
      }
      for (;;) {
        if (peek() != '"') {
          fail("expected a key string");
        }
        std::string key = parse_string();
        expect(':');
        v.members.emplace_back(std::move(key), parse_value(depth + 1));
        const char d = peek();
        ++i_;
        if (d == '}') {
          return v;
        }
        if (d != ',') {
          fail("expected ',' or '}'");
        }
      }
    }
    if (c == '[') {
      ++i_;
      v.type = value::kind::array;
      if (peek() == ']') {
        ++i_;
        return v;
      }
      for (;;) {
        v.items.push_back(parse_value(depth + 1));
        const char d = peek();
        ++i_;
        if (d == ']') {
          return v;
        }
        if (d != ',') {
          fail("expected ',' or ']'");
        }
      }
    }
    if (c == '"') {
      v.type = value::kind::string;
      v.text = parse_string();
      return v;
    }
    if (s_.substr(i_, 4) == "true") {
      i_ += 4;
      v.type = value::kind::boolean;
      v.b = true;
      return v;
    }
    if (s_.substr(i_, 5) == "false") {
      i_ += 5;
      v.type = value::kind::boolean;
      return v;
    }
    if (s_.substr(i_, 4) == "null") {
      i_ += 4;
      return v;
    }
    if (c == '-' || (c >= '0' && c <= '9')) {
      const std::size_t b = i_;
      while (i_ < s_.size() && (std::string_view("+-.eE0123456789").find(s_[i_]) != std::string_view::npos)) {
        ++i_;
      }
      v.type = value::kind::number;
      v.text = std::string(s_.substr(b, i_ - b));
      // JSON's grammar (RFC 8259), stricter than from_chars: "02", "1." and ".5" are not JSON, and
      // safetensors' own reader refuses a header that holds them.
      if (!json_number(v.text)) {
        fail(dp::detail::concat("'", v.text, "' is not a JSON number"));
      }
      // No conversion here: 1e-400 is JSON (its value underflows to 0, as Python and serde_json
      // read it), and the fields that need a value convert it themselves, strictly.
      return v;
    }
    fail("expected a value");
  }

  /// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
  static bool json_number(std::string_view t) {
    std::size_t i = 0;
    const auto digits = [&] {
      const std::size_t from = i;
      while (i < t.size() && t[i] >= '0' && t[i] <= '9') {
        ++i;
      }
      return i - from;
    };
    if (i < t.size() && t[i] == '-') {
      ++i;
    }
    const std::size_t first = i;
    const std::size_t whole = digits();
    if (whole == 0 || (whole > 1 && t[first] == '0')) {
      return false;
    }
    if (i < t.size() && t[i] == '.') {
      ++i;
      if (digits() == 0) {
        return false;
      }
    }
    if (i < t.size() && (t[i] == 'e' || t[i] == 'E')) {
      ++i;
      if (i < t.size() && (t[i] == '+' || t[i] == '-')) {
        ++i;
      }
      if (digits() == 0) {
        return false;
      }
    }
    return i == t.size();
  }

  std::string parse_string() {
    ++i_;  // opening quote
    std::string out;
    while (i_ < s_.size()) {
      const char c = s_[i_++];
      if (c == '"') {
        return out;
      }
      if (static_cast<unsigned char>(c) < 0x20) {
        fail("control character in a string");
      }
      if (c != '\\') {
        out += c;
        continue;
      }
      if (i_ >= s_.size()) {
        break;
      }
      const char e = s_[i_++];
      switch (e) {
        case '"':
        case '\\':
        case '/':
          out += e;
          break;
        case 'b':
          out += '\b';
          break;
        case 'f':
          out += '\f';
          break;
        case 'n':
          out += '\n';
          break;
        case 'r':
          out += '\r';
          break;
        case 't':
          out += '\t';
          break;
        case 'u': {
          unsigned cp = parse_hex4();
          // A character above U+FFFF is escaped as a surrogate pair; a lone surrogate is no character.
          if (cp >= 0xD800 && cp <= 0xDBFF) {
            if (s_.substr(i_, 2) != "\\u") {
              fail("a high surrogate \\u escape without its low one");
            }
            i_ += 2;
            const unsigned low = parse_hex4();
            if (low < 0xDC00 || low > 0xDFFF) {
              fail("a high surrogate \\u escape without its low one");
            }
            cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
          } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
            fail("a low surrogate \\u escape without its high one");
          }
          append_utf8(out, cp);
          break;
        }
        default:
          fail("unknown escape");
      }
    }
    fail("unterminated string");
  }

  unsigned parse_hex4() {
    if (i_ + 4 > s_.size()) {
      fail("truncated \\u escape");
    }
    unsigned cp = 0;
    const auto r = std::from_chars(s_.data() + i_, s_.data() + i_ + 4, cp, 16);
    if (r.ec != std::errc() || r.ptr != s_.data() + i_ + 4) {
      fail("bad \\u escape");
    }
    i_ += 4;
    return cp;
  }
  static void append_utf8(std::string& out, unsigned cp) {
    if (cp < 0x80) {
      out += static_cast<char>(cp);
    } else if (cp < 0x800) {
      out += static_cast<char>(0xC0 | (cp >> 6));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      out += static_cast<char>(0xE0 | (cp >> 12));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      out += static_cast<char>(0xF0 | (cp >> 18));
      out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    }
  }

  std::string_view s_, source_;
  std::size_t offset_ = 0;
  std::size_t i_ = 0;
  std::size_t values_ = 0;
};

/// A JSON string literal for `s`.
inline std::string quote(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(c));
          out += buf;
        } else {
          out += c;
        }
    }
  }
  return out + "\"";
}

}  // namespace dp::inline DP_ABI::io::json
