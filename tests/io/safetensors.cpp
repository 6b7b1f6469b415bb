#include <algorithm>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>

#include <doctest/doctest.h>

#include <dp/dp.hpp>

#include "../support/scratch.hpp"

namespace io = dp::io;

namespace {
/// A safetensors file built by hand from the format's definition: 8-byte little-endian header
/// length, a JSON header, then the data section.
std::string file_of(const std::string& json, const std::string& data) {
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) {
    out[static_cast<std::size_t>(i)] = static_cast<char>((json.size() >> (8 * i)) & 0xff);
  }
  return out + json + data;
}
std::string floats(std::initializer_list<float> v) {
  std::string s(v.size() * 4, '\0');
  std::memcpy(s.data(), std::data(v), s.size());
  return s;
}
}  // namespace

TEST_CASE("a file written by the format's rules is read: names, dtypes, shapes, values, metadata") {
  const std::string data = floats({1, 2, 3, 4, 5, 6}) + std::string("\x07\0\0\0\0\0\0\0", 8);
  const io::reader r(file_of(R"({"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},)"
                             R"("n":{"dtype":"I64","shape":[],"data_offsets":[24,32]},)"
                             R"("__metadata__":{"format":"pt"}})",
                             data),
                     "hand.safetensors");
  r.verify();  // no dp.crc32: nothing to verify
  REQUIRE(r.info().tensors.size() == 2);
  const auto* w = r.info().find("w");
  REQUIRE(w != nullptr);
  CHECK(w->shape == dp::shape{2, 3});
  CHECK(r.read<float>(*w).to_vector() == std::vector<float>{1, 2, 3, 4, 5, 6});
  CHECK(r.read<std::int64_t>(*r.info().find("n")).item() == 7);
  // reader::find (by binary search, for loads of many tensors) gives the same entries, in a file
  // whose names are out of order.
  CHECK(r.find("w") == w);
  CHECK(r.find("n") == r.info().find("n"));
  CHECK(r.find("x") == nullptr);
  CHECK(r.find("") == nullptr);
  CHECK(*r.info().meta("format") == "pt");
  CHECK_THROWS_WITH_AS(r.read<double>(*w), doctest::Contains("'w' is F32, expected F64"), dp::io_error);
}

TEST_CASE("encode writes what the format says: sorted names, aligned data, a CRC that verify checks") {
  const auto a = dp::from_vector<float>({1, 2, 3, 4}, {2, 2});
  const auto b = dp::from_vector<double>({0.5});
  const std::string bytes = io::encode({io::make_entry("zeta", a), io::make_entry("alpha", b)}, {{"k", "v"}});
  std::uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);  // little-endian host
  CHECK((8 + n) % 8 == 0);
  const std::string head = bytes.substr(8, n);
  CHECK(head.find("\"alpha\"") < head.find("\"zeta\""));
  CHECK(head.find(R"("alpha":{"dtype":"F64","shape":[1],"data_offsets":[0,8]})") != std::string::npos);
  CHECK(head.find(R"("zeta":{"dtype":"F32","shape":[2,2],"data_offsets":[8,24]})") != std::string::npos);
  const io::reader r(bytes, "mem");
  r.verify();
  CHECK(r.read<float>(*r.info().find("zeta")).to_vector() == std::vector<float>{1, 2, 3, 4});
  CHECK(*r.info().meta("k") == "v");
  // One flipped bit in the data is caught by the CRC.
  std::string flipped = bytes;
  flipped.back() ^= 1;
  CHECK_THROWS_WITH_AS(io::reader(flipped, "mem").verify(), doctest::Contains("mem: the data is corrupt: its CRC-32"),
                       dp::io_error);
  // The data's CRC deleted (its pair blanked to spaces, which JSON allows: the header's length and
  // CRC unchanged) no longer lets the flipped bit through: dp writes both CRCs or neither.
  const auto at = flipped.find(",\"dp.crc32\":\"");
  REQUIRE(at != std::string::npos);
  const auto end = flipped.find('"', at + 13);  // the value's closing quote
  std::fill(flipped.begin() + static_cast<std::ptrdiff_t>(at), flipped.begin() + static_cast<std::ptrdiff_t>(end) + 1,
            ' ');
  CHECK_THROWS_WITH_AS(io::reader(flipped, "mem").verify(),
                       doctest::Contains("mem: the header records its CRC-32 (dp.header_crc32) but not its data's "
                                         "(dp.crc32)"),
                       dp::io_error);
}

TEST_CASE("truncated and corrupt files are io_errors that say what is wrong") {
  const std::string good = io::encode({io::make_entry("w", dp::from_vector<float>({1, 2, 3}))}, {});
  auto error_of = [](const std::string& bytes) {
    try {
      io::reader r(bytes, "f");
      r.verify();
    } catch (const dp::io_error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  CHECK(error_of(good.substr(0, 5)).find("f: truncated: 5 bytes") != std::string::npos);
  CHECK(error_of(good.substr(0, 20)).find("truncated: the header needs") != std::string::npos);
  CHECK(error_of(good.substr(0, good.size() - 4)).find("spans bytes [0, 12) but the data section has 8") !=
        std::string::npos);
  CHECK(error_of(good + "xx").find("the data section has 14 bytes but the tensors cover 12") != std::string::npos);
  CHECK(error_of(file_of("[1,2]", "")).find("not a JSON object") != std::string::npos);
  CHECK(error_of(file_of("{\"w\":{\"dtype\":\"F32\"", "")).find("f") != std::string::npos);
  CHECK(error_of(file_of(R"({"w":{"dtype":"F16","shape":[1],"data_offsets":[0,2]}})", "ab"))
            .find("dtype 'F16' (dp reads F32, F64, I64, I32, U8, BOOL)") != std::string::npos);
  CHECK(error_of(file_of(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}})", "abcd"))
            .find("needs 8 bytes but spans 4") != std::string::npos);
  CHECK(error_of(file_of(R"({"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},)"
                         R"("b":{"dtype":"U8","shape":[2],"data_offsets":[1,3]}})",
                         "abc"))
            .find("overlaps") != std::string::npos);
  // Which file, which entry, which field and the value: not just "must be a non-negative integer".
  CHECK(error_of(file_of(R"({"w":{"dtype":"U8","shape":[2],"data_offsets":[-1,2]}})", "ab"))
            .find("f: entry 'w': data_offsets[0] '-1' must be a non-negative integer") != std::string::npos);
  CHECK(error_of(file_of(R"({"w":{"dtype":"U8","shape":[2.5],"data_offsets":[0,2]}})", "ab"))
            .find("f: entry 'w': a shape entry '2.5' must be") != std::string::npos);
  // Numbers JSON does not allow, which safetensors' own reader refuses (from_chars took them).
  for (const char* number : {"02", "2.", "-01", "1.e5", "1e", "-"}) {
    CAPTURE(number);
    CHECK(
        error_of(file_of(std::string(R"({"w":{"dtype":"U8","shape":[)") + number + R"(],"data_offsets":[0,2]}})", "ab"))
            .find(std::string("'") + number + "' is not a JSON number") != std::string::npos);
  }
  for (const char* number : {".5", "+2"}) {  // not a value at all
    CAPTURE(number);
    CHECK(error_of(file_of(std::string(R"({"w":{"dtype":"U8","shape":[)") + number + R"(],"data_offsets":[0,2]}})",
                           "ab")) != "no error");
  }
  CHECK(error_of(file_of(R"({"w":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},"__metadata__":{}})", "ab")) ==
        "no error");
  std::string huge = good;
  huge[7] = 0x40;
  CHECK(error_of(huge).find("corrupt header: its length field says") != std::string::npos);
  // The bound itself, without a 100 MB file: a length field of exactly the most a header may be
  // passes the format's limit (and finds the file too short); one byte more is refused as corrupt.
  const auto with_length = [&](std::uint64_t n) {
    std::string bytes = good;
    for (int i = 0; i < 8; ++i) {
      bytes[static_cast<std::size_t>(i)] = static_cast<char>((n >> (8 * i)) & 0xff);
    }
    return error_of(bytes);
  };
  CHECK(with_length(io::max_header_bytes).find("f: truncated: the header needs 100000000 bytes") != std::string::npos);
  CHECK(with_length(io::max_header_bytes + 1)
            .find("f: corrupt header: its length field says 100000001 bytes (the format allows at most 100000000)") !=
        std::string::npos);
  CHECK(error_of(good) == "no error");
}

TEST_CASE("the header starts with '{' at byte 8: leading whitespace is refused, trailing padding is not") {
  const std::string entry = R"({"w":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}})";
  const auto error_of = [](const std::string& json) {
    try {
      (void)io::reader(file_of(json, "ab"), "f");
    } catch (const dp::io_error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  CHECK(error_of("  " + entry) ==
        "dp: f: corrupt header: not a JSON object starting at byte 8 (its first byte is ' ' (32); the format requires "
        "'{' right after the 8-byte length)");
  CHECK(error_of("\n" + entry).find("not a JSON object starting at byte 8 (its first byte is 10;") !=
        std::string::npos);
  CHECK(error_of("").find("not a JSON object starting at byte 8 (the header is empty;") != std::string::npos);
  CHECK(error_of(entry + "      ") == "no error");  // the format pads the header's end with spaces
}

TEST_CASE("a name or metadata key given twice is refused, also among the most entries a header may hold") {
  auto error_of = [](const std::string& bytes) {
    try {
      io::reader r(bytes, "f");
    } catch (const dp::io_error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  CHECK(error_of(file_of(R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},)"
                         R"("a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}})",
                         "xy"))
            .find("f: entry 'a' appears twice") != std::string::npos);
  CHECK(error_of(file_of(R"({"__metadata__":{"k":"1","k":"2"}})", "")).find("f: metadata key 'k' appears twice") !=
        std::string::npos);
  CHECK(error_of(file_of(R"({"__metadata__":{"k":"1"},"__metadata__":{"j":"2"}})", ""))
            .find("f: the header holds __metadata__ twice") != std::string::npos);
  // A field given twice inside an entry: Python's json keeps the last (I32, [2, 2]), dp read the first.
  CHECK(
      error_of(file_of(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"dtype":"I32","shape":[2,2]}})", "abcd"))
          .find("f: entry 'w' gives dtype 2 times") != std::string::npos);
  CHECK(error_of(file_of(R"({"w":{"dtype":"U8","data_offsets":[0,1],"shape":[1],"data_offsets":[0,1]}})", "a"))
            .find("f: entry 'w' gives data_offsets 2 times") != std::string::npos);
  // 120,000 one-byte entries (8 MB of header, 720,000 values: under both caps). The check sorts the
  // names once; comparing each with every earlier one took 32 s here (0.17 s now, Intel VM, -O2).
  std::string head = "{", data;
  for (int i = 0; i < 120'000; ++i) {
    head += "\"e" + std::to_string(i) + "\":{\"dtype\":\"U8\",\"shape\":[],\"data_offsets\":[" + std::to_string(i) +
            "," + std::to_string(i + 1) + "]},";
    data += 'x';
  }
  const std::string last = "\"e77\":{\"dtype\":\"U8\",\"shape\":[],\"data_offsets\":[120000,120001]}}";
  CHECK(error_of(file_of(head + last, data + 'x')).find("entry 'e77' appears twice") != std::string::npos);
  head.back() = '}';
  CHECK(error_of(file_of(head, data)) == "no error");
}

TEST_CASE("raw and read take only entries that describe this file's bytes") {
  const io::reader small(io::encode({io::make_entry("w", dp::from_vector<float>({1}))}, {}), "small");
  const io::reader big(io::encode({io::make_entry("w", dp::zeros<float>({1000}))}, {}), "big");
  const io::tensor_entry& foreign = *big.info().find("w");  // 4,000 bytes; small holds 4
  CHECK_THROWS_WITH_AS((void)small.raw(foreign), doctest::Contains("does not describe data of this file (4 bytes)"),
                       dp::io_error);
  CHECK_THROWS_WITH_AS((void)small.read<float>(foreign), doctest::Contains("small: entry 'w'"), dp::io_error);
  io::tensor_entry made{"m", io::dtype::f32, {2}, 0, 4};  // the shape needs 8 bytes
  CHECK_THROWS_AS((void)small.raw(made), dp::io_error);
  CHECK(small.read<float>(*small.info().find("w")).to_vector() == std::vector<float>{1});
}

TEST_CASE("encode refuses entries that would make a file no reader takes back") {
  const auto w = io::make_entry("w", dp::from_vector<float>({1, 2}));
  const auto refused = [](std::vector<io::entry> entries, std::vector<std::pair<std::string, std::string>> meta,
                          const char* what) {
    CAPTURE(what);
    CHECK_THROWS_WITH_AS((void)io::encode(std::move(entries), std::move(meta)), doctest::Contains(what),
                         dp::value_error);
  };
  refused({io::entry{"w", io::dtype::f32, {2, 3}, std::vector<char>(8)}}, {},
          "entry 'w' (F32, shape {2, 3}) needs 24 bytes but holds 8");
  refused({io::entry{"w", io::dtype::u8, {-1}, {}}}, {}, "entry 'w' has shape {-1}");
  // No bytes, but an extent the reader refuses (2^41): the writer applies the reader's rule.
  refused({io::entry{"w", io::dtype::f32, {0, std::int64_t{1} << 41}, {}}}, {},
          "entry 'w' has shape {0, 2199023255552} (a file holds extents from 0 to below 2^40");
  refused({io::entry{"w", static_cast<io::dtype>(9), {0}, {}}}, {}, "dtype value 9 is none of");
  refused({w, w}, {}, "entry 'w' is given twice");
  refused({io::entry{"__metadata__", io::dtype::u8, {0}, {}}}, {}, "'__metadata__' is the format's metadata key");
  refused({w}, {{"k", "1"}, {"k", "2"}}, "metadata key 'k' is given twice");
  refused({w}, {{"dp.crc32", "00000000"}}, "metadata key 'dp.crc32' is dp's own");
  // The header is JSON, which readers require to be UTF-8 (a Latin-1 byte, a truncated sequence, an
  // encoded surrogate).
  refused({io::make_entry("w\xe9", dp::from_vector<float>({1}))}, {}, "entry name 'w...' is not valid UTF-8 at byte 1");
  refused({w}, {{"k\xc3", "1"}}, "metadata key 'k...' is not valid UTF-8 at byte 1");
  refused({w}, {{"k", "ab\xed\xa0\x80"}}, "metadata value 'ab...' is not valid UTF-8 at byte 2");
  const io::reader back(io::encode({w}, {{"k", "1"}}), "back");  // and what it takes reads back
  back.verify();
  CHECK(back.read<float>(*back.info().find("w")).to_vector() == std::vector<float>{1, 2});
}

TEST_CASE("header text is UTF-8: escapes decode to it, invalid bytes and lone surrogates are refused") {
  // U+00E9 and U+1F600 (a surrogate pair), escaped as Python's json.dumps writes them, name the
  // tensors whose names are those characters in UTF-8; the same names unescaped read the same.
  const std::string entry = R"(:{"dtype":"U8","shape":[1],"data_offsets":[0,1]})";
  const io::reader escaped(file_of(R"({"caf\u00e9")" + entry +
                                       R"(,"x\ud83d\ude00":{"dtype":"U8","shape":[1],)"
                                       R"("data_offsets":[1,2]}})",
                                   "ab"),
                           "escaped");
  CHECK(escaped.info().find("caf\xc3\xa9") != nullptr);
  CHECK(escaped.info().find("x\xf0\x9f\x98\x80") != nullptr);
  const io::reader plain(file_of("{\"caf\xc3\xa9\"" + entry + "}", "a"), "plain");
  CHECK(plain.info().find("caf\xc3\xa9") != nullptr);
  const auto refused = [&](const std::string& name, const char* what) {
    CAPTURE(what);
    CHECK_THROWS_WITH_AS(io::reader(file_of("{\"" + name + "\"" + entry + "}", "a"), "f"), doctest::Contains(what),
                         dp::io_error);
  };
  refused("caf\xe9", "f: malformed header at byte 13: not valid UTF-8");     // Latin-1 (the JSON starts at byte 8)
  refused("\xc0\xaf", "f: malformed header at byte 10: not valid UTF-8");    // overlong '/'
  refused("a\xf4\x90\x80\x80", "at byte 11: not valid UTF-8");               // above U+10FFFF
  refused(R"(x\ud83d)", "a high surrogate \\u escape without its low one");  // lone, at the end
  refused(R"(x\ud83dy)", "a high surrogate \\u escape without its low one");
  refused(R"(x\ude00)", "a low surrogate \\u escape without its high one");
}

TEST_CASE("a JSON number outside a double's range (1e-400) is taken in a field dp reads no value from") {
  const io::reader r(file_of(R"({"w":{"dtype":"U8","shape":[1],"data_offsets":[0,1],"x":1e-400,"y":-2E+999}})", "a"),
                     "tiny");
  CHECK(r.info().find("w") != nullptr);
  // Not JSON numbers, as before: refused with the file's byte (the JSON starts at byte 8).
  CHECK_THROWS_WITH_AS(io::reader(file_of(R"({"w":{"dtype":"U8","shape":[1],"data_offsets":[0,1],"x":.5}})", "a"), "f"),
                       doctest::Contains("f: malformed header at byte 64: expected a value"), dp::io_error);
}

TEST_CASE("make_entry of an undefined tensor names the entry") {
  CHECK_THROWS_WITH_AS((void)io::make_entry("a", dp::tensor<float>{}),
                       doctest::Contains("dp: safetensors: make_entry: the tensor for entry 'a' is undefined"),
                       dp::value_error);
}

TEST_CASE("encode refuses a header longer, or of more JSON values, than a reader takes back") {
  const auto w = io::make_entry("w", dp::from_vector<float>({1, 2}));
  CHECK_THROWS_WITH_AS((void)io::encode({w}, {{"note", std::string(io::max_header_bytes, 'x')}}),
                       doctest::Contains("the header would be at least 100000005 bytes, but readers take at most "
                                         "100000000 (its longest part is metadata 'note', 100000000 bytes)"),
                       dp::value_error);
  // 71,428 entries of rank 8 (14 values each) and 4 metadata pairs: with the root, the metadata
  // object and its two CRCs, exactly the parser's million values. The reader takes that back; one
  // metadata pair more is refused by encode.
  std::vector<io::entry> many;
  for (int i = 0; i < 71'428; ++i) {
    many.push_back({"e" + std::to_string(i), io::dtype::u8, dp::shape::filled(8, 1), std::vector<char>(1)});
  }
  std::vector<std::pair<std::string, std::string>> meta{{"a", "1"}, {"b", "2"}, {"c", "3"}, {"d", "4"}};
  const io::reader back(io::encode(many, meta), "most");
  CHECK(back.info().tensors.size() == 71'428);
  meta.emplace_back("e", "5");
  CHECK_THROWS_WITH_AS((void)io::encode(std::move(many), std::move(meta)),
                       doctest::Contains("the header would hold 1000001 JSON values (71428 entries, 5 metadata "
                                         "pairs), but readers parse at most 1000000"),
                       dp::value_error);
}

TEST_CASE("a header of many small values is refused before it costs more memory than a real one") {
  // 1.5 million zeros in one array: 3 MB of header, within the length cap, but 150+ MB of parsed
  // values. The parser stops at a million values.
  std::string many = "{\"__metadata__\":{\"x\":\"y\"},\"w\":{\"dtype\":\"U8\",\"shape\":[";
  for (int i = 0; i < 1'500'000; ++i) {
    many += i ? ",0" : "0";
  }
  many += "],\"data_offsets\":[0,0]}}";
  try {
    io::reader r(file_of(many, ""), "f");
    FAIL("expected an io_error");
  } catch (const dp::io_error& e) {
    CHECK(std::string(e.what()).find("f: malformed header at byte") != std::string::npos);
    CHECK(std::string(e.what()).find("more than 1000000 values") != std::string::npos);
  }
}

TEST_CASE("writes are atomic: a failed write leaves the old file, no temporary is left behind") {
  const std::filesystem::path dir = std::filesystem::path(dp_test::scratch_path("atomic"));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  const std::string path = (dir / "w.safetensors").string();
  io::write(path, {io::make_entry("w", dp::from_vector<float>({1, 2}))});
  io::write(path, {io::make_entry("w", dp::from_vector<float>({3, 4}))});
  CHECK(io::reader(path).read<float>(*io::reader(path).info().find("w")).to_vector() == std::vector<float>{3, 4});
  CHECK(std::distance(std::filesystem::directory_iterator(dir), std::filesystem::directory_iterator()) == 1);
  CHECK_THROWS_WITH_AS(io::write((dir / "missing" / "x.safetensors").string(), {}), doctest::Contains("cannot create"),
                       dp::io_error);
  CHECK_THROWS_WITH_AS(io::reader((dir / "absent.safetensors").string()), doctest::Contains("cannot open"),
                       dp::io_error);
  std::filesystem::remove_all(dir);
}
