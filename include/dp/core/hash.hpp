// FNV-1a, 64 bits: a cheap, stable hash of short texts (names that must fit a file name, metadata
// that ranks compare). Not for anything an adversary chooses to collide.
#pragma once

#include <cstdint>
#include <string_view>

#include <dp/config.hpp>

namespace dp::inline DP_ABI::detail {

inline constexpr std::uint64_t fnv1a_basis = 14695981039346656037ull;

/// `h` extended by the bytes of `s`.
constexpr std::uint64_t fnv1a(std::string_view s, std::uint64_t h = fnv1a_basis) {
  for (const char c : s) {
    h = (h ^ static_cast<unsigned char>(c)) * 1099511628211ull;
  }
  return h;
}

}  // namespace dp::inline DP_ABI::detail
