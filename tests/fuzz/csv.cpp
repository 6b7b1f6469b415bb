// libFuzzer target: CSV text. Parses it with a few option sets (label last or first, with and
// without a header line, comma or semicolon) and reads back the dataset's rows. Only dp::error may
// escape the library; anything else is a finding.
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include <dp/data/csv.hpp>

namespace {
namespace data = dp::data;

void check(std::string_view text, const data::csv_options& o) {
  try {
    const auto d = data::parse_csv(text, o, "fuzz.csv");
    const dp::index_t n = d.size();
    if (n <= 0 || d.features().rank() != 2 || d.features().shape()[0] != n) {
      __builtin_trap();  // parse_csv promises features [N, columns - 1] and labels [N], N > 0
    }
    // Every sample, through the path a loader takes.
    std::vector<dp::index_t> idx;
    for (dp::index_t i = 0; i < n && i < 64; ++i) {
      idx.push_back(n - 1 - i);
    }
    const auto b = d.get(idx);
    for (std::size_t i = 0; i < idx.size(); ++i) {
      if (b.y.data()[i] < 0) {
        __builtin_trap();  // labels are non-negative class indices
      }
    }
  } catch (const dp::error&) {
  }
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* bytes, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(bytes), size);
  check(text, {});                                     // digits: label last, no header
  check(text, {.label_column = 0, .header = true});    // label first, header line
  check(text, {.label_column = -2});                   // label second to last
  check(text, {.label_column = 1, .delimiter = ';'});  // semicolons
  check(text, {.delimiter = '\t'});                    // tabs (kept when trimming)
  check(text, {.label_column = 1 << 20});              // a column that never exists
  return 0;
}
