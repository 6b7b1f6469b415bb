#include <cmath>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <string>

#include <doctest/doctest.h>
#include <zlib.h>

#include <dp/dp.hpp>

namespace data = dp::data;

TEST_CASE("parse_csv reads features and the label column, which may sit anywhere") {
  const auto last = data::parse_csv("1,2.5,3\n4,-5e-1,0\n", {});
  CHECK(last.features().shape() == dp::shape{2, 2});
  CHECK(last.features().to_vector() == std::vector<float>{1, 2.5f, 4, -0.5f});
  CHECK(last.labels().to_vector() == std::vector<std::int64_t>{3, 0});

  const auto first =
      data::parse_csv("label;a;b\r\n 7 ; 1;2\r\n\r\n8;3 ;4\r\n", {.label_column = 0, .header = true, .delimiter = ';'});
  CHECK(first.features().to_vector() == std::vector<float>{1, 2, 3, 4});
  CHECK(first.labels().to_vector() == std::vector<std::int64_t>{7, 8});
}

TEST_CASE("malformed CSV names the source, the line, the column and what was expected") {
  CHECK_THROWS_WITH_AS(data::parse_csv("1,2,3\n4,5\n", {}, "f.csv"),
                       doctest::Contains("f.csv line 2: 2 columns, expected 3 (as in the first row)"), dp::io_error);
  CHECK_THROWS_WITH_AS(data::parse_csv("1,2,3\n4,x5,6\n", {}, "f.csv"),
                       doctest::Contains("f.csv line 2, column 2: 'x5' is not a number"), dp::io_error);
  CHECK_THROWS_WITH_AS(data::parse_csv("1,2,3\n4,5,6.5\n", {}, "f.csv"),
                       doctest::Contains("line 2, column 3: label '6.5' is not a class index"), dp::io_error);
  CHECK_THROWS_WITH_AS(data::parse_csv("1,2,-1\n", {}, "f.csv"), doctest::Contains("label '-1'"), dp::io_error);
  CHECK_THROWS_WITH_AS(data::parse_csv("1,,3\n", {}, "f.csv"),
                       doctest::Contains("line 1, column 2: '' is not a number"), dp::io_error);
  CHECK_THROWS_WITH_AS(data::parse_csv("\n\n", {}, "f.csv"), doctest::Contains("f.csv holds no data rows"),
                       dp::io_error);
  CHECK_THROWS_WITH_AS(data::parse_csv("1,2\n", {.label_column = 5}, "f.csv"),
                       doctest::Contains("label column 5 does not exist in rows of 2 columns"), dp::io_error);
}

TEST_CASE("tab-separated: an empty first or last cell is an empty cell, not a shift of the columns") {
  CHECK_THROWS_WITH_AS(data::parse_csv("\t1\t2\n\t3\t4\n", {.label_column = 0, .delimiter = '\t'}, "f.tsv"),
                       doctest::Contains("f.tsv line 1, column 1: label '' is not a class index"), dp::io_error);
  CHECK_THROWS_WITH_AS(data::parse_csv("1\t2\t\n3\t4\t\n", {.delimiter = '\t'}, "f.tsv"),
                       doctest::Contains("f.tsv line 1, column 3: label '' is not a class index"), dp::io_error);
  // Space-separated files keep their trimmed ends.
  const auto spaced = data::parse_csv("1 2 3 \r\n 4 5 6\n", {.delimiter = ' '});
  CHECK(spaced.features().to_vector() == std::vector<float>{1, 2, 4, 5});
  CHECK(spaced.labels().to_vector() == std::vector<std::int64_t>{3, 6});
  // Spaces around cells and a '\r' still go.
  const auto d = data::parse_csv(" 1 \t 2\t3 \r\n", {.delimiter = '\t'});
  CHECK(d.features().to_vector() == std::vector<float>{1, 2});
  CHECK(d.labels().to_vector() == std::vector<std::int64_t>{3});
}

TEST_CASE("header = true skips the first line that is not blank") {
  // A numeric header (pandas writes 0,1,2) after a blank line was read as a data row.
  const auto d = data::parse_csv("\r\n\n0,1,2\n5,6,1\n", {.header = true});
  CHECK(d.features().to_vector() == std::vector<float>{5, 6});
  CHECK(d.labels().to_vector() == std::vector<std::int64_t>{1});
}

TEST_CASE("cells as spreadsheets and NumPy write them: a byte order mark, a leading '+', magnitudes below float's") {
  // Excel's "CSV UTF-8" starts with a byte order mark: it was part of the first cell ('\xEF\xBB\xBF1' is
  // not a number, shown as '1' on a terminal), or dropped with a header line.
  const auto bom = data::parse_csv(
      "\xEF\xBB\xBF"
      "1,+2.5,+3\n-4,1e-50,0\n",
      {});
  CHECK(bom.features().to_vector() == std::vector<float>{1, 2.5f, -4, 0});
  CHECK(bom.labels().to_vector() == std::vector<std::int64_t>{3, 0});
  // Below the smallest normal float a value rounds to the nearest float (0 or a subnormal), as
  // strtof does; only magnitudes above FLT_MAX are out of range.
  // 1e-5000 is beyond even long double's range (80 bits): still 0, not "too large".
  const auto tiny = data::parse_csv("-1e-50,1\n1e-4000,1\n1e-5000,1\n-0.0001e-99999,1\n", {});
  CHECK(tiny.features().to_vector() == std::vector<float>{0, 0, 0, 0});
  CHECK(std::signbit(tiny.features().to_vector()[0]));
  CHECK(std::signbit(tiny.features().to_vector()[3]));
  CHECK_THROWS_WITH_AS(data::parse_csv("1e5000,2\n", {}, "f.csv"),
                       doctest::Contains("'1e5000' is outside float's range"), dp::io_error);
  CHECK_THROWS_WITH_AS(data::parse_csv("+-1,2\n", {}, "f.csv"), doctest::Contains("'+-1' is not a number"),
                       dp::io_error);
  CHECK_THROWS_WITH_AS(data::parse_csv("1,+-2\n", {}, "f.csv"), doctest::Contains("label '+-2' is not a class index"),
                       dp::io_error);
  CHECK_THROWS_WITH_AS(data::parse_csv("++1,2\n", {}, "f.csv"), doctest::Contains("'++1' is not a number"),
                       dp::io_error);
}

TEST_CASE("a float cell outside float's range, nan or inf is an error that says so") {
  CHECK_THROWS_WITH_AS(data::parse_csv("1,2\n1e40,3\n", {}, "f.csv"),
                       doctest::Contains("f.csv line 2, column 1: '1e40' is outside float's range"), dp::io_error);
  CHECK_THROWS_WITH_AS(data::parse_csv("-1e39,3\n", {}, "f.csv"), doctest::Contains("outside float's range"),
                       dp::io_error);
  for (const char* cell : {"nan", "inf", "-inf", "NaN"}) {
    CAPTURE(cell);
    CHECK_THROWS_WITH_AS(data::parse_csv(std::string(cell) + ",1\n", {}, "f.csv"),
                         doctest::Contains("is not finite (set csv_options::allow_non_finite"), dp::io_error);
  }
  const auto kept = data::parse_csv("nan,1\ninf,2\n", {.allow_non_finite = true});
  CHECK(std::isnan(kept.features().to_vector()[0]));
  CHECK(std::isinf(kept.features().to_vector()[1]));
}

TEST_CASE("csv_dataset reads gzip files and plain files alike; a missing or truncated file is an io_error") {
  const std::string plain = "dp_test_plain.csv";
  { std::ofstream(plain) << "0,1,2\n3,4,5\n"; }
  const auto d = data::csv_dataset(plain);
  CHECK(d.labels().to_vector() == std::vector<std::int64_t>{2, 5});
  std::remove(plain.c_str());

  const auto digits = data::csv_dataset(DP_TEST_PROJECT_DIR "/examples/data/digits.csv.gz", {.label_column = 64});
  CHECK(digits.size() == 1797);  // examples/data/README.md: 1797 rows
  CHECK(digits.features().shape() == dp::shape{1797, 64});
  CHECK(dp::max(digits.features()).item() == 16.f);
  CHECK(dp::max(digits.labels()).item() == 9);

  CHECK_THROWS_WITH_AS(data::csv_dataset("does/not/exist.csv"),
                       doctest::Contains("cannot open 'does/not/exist.csv' for reading: No such file or directory"),
                       dp::io_error);
  CHECK_THROWS_WITH_AS(data::csv_dataset(DP_TEST_PROJECT_DIR "/examples"), doctest::Contains("Is a directory"),
                       dp::io_error);
}

TEST_CASE("a gzip file cut short, with bytes after its stream, or corrupt is refused (not read in part)") {
  std::ifstream in(DP_TEST_PROJECT_DIR "/examples/data/digits.csv.gz", std::ios::binary);
  const std::string whole((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const std::string path = "dp_test_damaged.csv.gz";
  auto read_with = [&](const std::string& bytes) {
    { std::ofstream(path, std::ios::binary) << bytes; }
    return data::csv_dataset(path, {.label_column = 64});
  };
  // Cut in half: zlib's gzread returned the first half's rows without a word (733 of 1438 samples).
  for (const std::size_t keep : {whole.size() / 2, whole.size() - 1, std::size_t{200}}) {
    CAPTURE(keep);
    CHECK_THROWS_WITH_AS(read_with(whole.substr(0, keep)), doctest::Contains("the gzip stream is truncated"),
                         dp::io_error);
  }
  CHECK_THROWS_WITH_AS(read_with(whole + "garbage"), doctest::Contains("trailing data"), dp::io_error);
  std::string flipped = whole;
  flipped[whole.size() / 2] = static_cast<char>(flipped[whole.size() / 2] ^ 0x55);
  CHECK_THROWS_AS(read_with(flipped), dp::io_error);   // corrupt data or a wrong checksum
  CHECK(read_with(whole + whole).size() == 2 * 1797);  // two gzip members: both read, as gunzip does
  std::remove(path.c_str());
}

TEST_CASE("a gzip file decompresses up to its limit, never to twice it; one byte more is refused naming the limit") {
  // The output grows by copying. Doubling took 200000 bytes to a capacity of 262144 (and the copy's
  // peak to 393216): near the memory this process may use, past it.
  const std::string path = "dp_test_growing.csv.gz";
  const std::string content(200000, '7');
  {
    gzFile z = gzopen(path.c_str(), "wb");
    REQUIRE(z != nullptr);
    REQUIRE(gzwrite(z, content.data(), static_cast<unsigned>(content.size())) == static_cast<int>(content.size()));
    REQUIRE(gzclose(z) == Z_OK);
  }
  const std::string got = data::detail::read_file(path, content.size());
  CHECK(got == content);
  CHECK(got.capacity() <= content.size());
  CHECK_THROWS_WITH_AS((void)data::detail::read_file(path, content.size() - 1),
                       doctest::Contains("it decompresses to more than 199999 bytes"), dp::io_error);
  std::remove(path.c_str());
}
