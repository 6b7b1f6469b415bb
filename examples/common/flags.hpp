// The examples' command line: `--name value` flags, every mistake refused with the flag, the value
// and the form expected (exit code 2), never accepted silently nor left to crash the program.
#pragma once

#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <set>
#include <stdexcept>
#include <string>
#include <system_error>
#include <utility>

namespace example {

/// A flag's value that cannot be used: main prints it and returns 2, so that under mpirun MPI
/// ends first (an exit() would skip MPI_Finalize, which mpirun reports as a failed job).
struct flag_error : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};

/// `--name value` flags with defaults. The constructor prints `usage` and exits 0 on --help or -h,
/// and exits 2 naming the mistake on an unknown argument, a flag given twice or a flag without its
/// value (last on the line, empty, or followed by another flag); main makes it before MPI starts.
/// The readers (integer, number) throw flag_error unless the whole value has the form asked for.
class flags {
 public:
  flags(int argc, char** argv, std::string usage, std::map<std::string, std::string> defaults)
      : usage_(std::move(usage)), values_(std::move(defaults)) {
    std::set<std::string> given;
    for (int i = 1; i < argc; ++i) {
      const std::string a = argv[i];
      if (a == "--help" || a == "-h") {
        std::printf("%s", usage_.c_str());
        std::exit(0);
      }
      const std::string k = a.rfind("--", 0) == 0 ? a.substr(2) : "";
      if (values_.count(k) == 0) {
        const auto eq = k.find('=');
        const bool joined = eq != std::string::npos && values_.count(k.substr(0, eq)) != 0;
        std::fprintf(stderr, "unknown argument '%s'%s\n\n%s", a.c_str(),
                     joined ? ("; write the value after a space: " + form(k.substr(0, eq))).c_str() : "",
                     usage_.c_str());
        std::exit(2);
      }
      if (i + 1 >= argc) {
        fail(a + " needs a value: " + form(k));
      }
      const std::string v = argv[++i];
      if (v.empty()) {
        fail(a + " needs a value: " + form(k) + ", but is given an empty one");
      }
      if (v.rfind("--", 0) == 0) {  // `--epochs --batch 8` would read "--batch" as the epochs
        fail(a + " needs a value: " + form(k) + ", but is followed by the flag '" + v + "'");
      }
      if (!given.insert(k).second) {  // the last one winning would hide a typo in a long command line
        fail(a + " is given twice ('" + values_[k] + "', then '" + v + "'); give each flag once");
      }
      values_[k] = v;
    }
  }

  const std::string& str(const std::string& k) const { return values_.at(k); }

  /// The flag as a decimal integer in [lo, hi]: an optional '-' and digits, nothing else (no space,
  /// '+', fraction or suffix: "3abc" is refused, not read as 3). `why` follows the range in the error.
  long long integer(const std::string& k, long long lo, long long hi, const std::string& why = "") const {
    const std::string& s = str(k);
    long long v = 0;
    const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc{} || end != s.data() + s.size() || v < lo || v > hi) {  // out of long long: ec says so
      refuse(k, "an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]" + why);
    }
    return v;
  }

  /// The flag as a finite decimal number for which ok(value) holds; `expected` names that set
  /// ("a number > 0"). The whole value must be the number (no space before it, nothing after it).
  template <class Ok>
  double number(const std::string& k, Ok ok, const std::string& expected) const {
    const std::string& s = str(k);
    double v = 0;
    std::size_t used = 0;
    if (!s.empty() && std::isspace(static_cast<unsigned char>(s[0])) == 0) {
      try {
        v = std::stod(s, &used);
      } catch (const std::exception&) {  // no number, or one beyond a double's range
        used = 0;
      }
    }
    if (used == 0 || used != s.size() || !std::isfinite(v) || !ok(v)) {
      refuse(k, expected);
    }
    return v;
  }

  /// Throws the error for flag `k`: its value is not `expected`.
  [[noreturn]] void refuse(const std::string& k, const std::string& expected) const {
    throw flag_error("--" + k + ": '" + str(k) + "' is not " + expected);
  }

 private:
  [[noreturn]] static void fail(const std::string& why) {
    std::fprintf(stderr, "%s; see --help\n", why.c_str());
    std::exit(2);
  }

  /// "--epochs N (default 40)": the flag with the placeholder its line of the usage gives it.
  std::string form(const std::string& k) const {
    const std::string flag = "\n  --" + k + " ";  // the flag's own line, not a mention elsewhere
    std::string out = "--" + k + " ";
    const auto at = usage_.find(flag);
    if (at == std::string::npos) {
      out += "VALUE";
    } else {
      const auto from = at + flag.size();
      out += usage_.substr(from, usage_.find_first_of(" \n", from) - from);
    }
    const std::string& d = values_.at(k);
    return d.empty() ? out : out + " (default " + d + ")";
  }

  std::string usage_;
  std::map<std::string, std::string> values_;
};

}  // namespace example
