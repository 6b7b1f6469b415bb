// Paths of the files and folders a test writes: in the temporary folder, named per process. ctest -j
// runs test binaries side by side (and a developer may run two builds' suites at once); with shared
// names one run removed or overwrote another's file mid-test.
#pragma once

#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <unistd.h>

namespace dp_test {

inline std::string scratch_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() / ("dp_test_" + std::to_string(::getpid()) + "_" + name)).string();
}

/// The bytes of a file a test wrote (to compare, damage or edit them).
inline std::string bytes_of(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

}  // namespace dp_test
