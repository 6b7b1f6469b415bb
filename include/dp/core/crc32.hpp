// CRC-32 (zlib's) of byte ranges of any length: the checksum of safetensors and checkpoint files,
// and of the datasets ranks compare before they shard one.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string_view>

#include <zlib.h>

#include <dp/config.hpp>

namespace dp::inline DP_ABI::detail {

/// The CRC-32 of `bytes`, continuing from `crc` (that of the bytes before them; 0 for none), fed to
/// zlib in chunks its 32-bit length takes.
inline std::uint32_t crc32_of(std::string_view bytes, std::uint32_t crc = 0) {
  uLong c = crc;
  for (std::size_t off = 0; off < bytes.size(); off += std::size_t{1} << 30) {
    const std::size_t chunk = std::min<std::size_t>(bytes.size() - off, std::size_t{1} << 30);
    c = crc32(c, reinterpret_cast<const Bytef*>(bytes.data() + off), static_cast<uInt>(chunk));
  }
  return static_cast<std::uint32_t>(c);
}

}  // namespace dp::inline DP_ABI::detail
