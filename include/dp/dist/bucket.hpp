// Gradient buckets: contiguous ranges of the flat gradient buffer, reduced as units. Gradients are
// laid out in reverse declaration order (roughly the order backward completes them), and the first
// bucket is small, so that with an asynchronous communicator (MPI, NCCL) the reduction of early
// buckets can start while backward still runs. The local communicator reduces them in order after
// backward, through the same interface.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include <dp/config.hpp>
#include <dp/nn/trainer.hpp>

namespace dp::inline DP_ABI::dist {

struct bucket {
  index_t begin, end;  // element range of the flat gradient buffer
};

namespace detail {
/// The most elements a gradient bucket holds (MPI counts in int). Tests lower it to split small
/// parameters across buckets.
inline index_t max_bucket_elements = INT32_MAX;
}  // namespace detail

/// Splits the parameters (in flat-buffer order) into buckets of about `bytes` (the first one of
/// `first_bytes`), never splitting a parameter unless it alone passes `max_elements`: MPI counts a
/// collective's elements in int, so a larger embedding is reduced in several buckets.
inline std::vector<bucket> make_buckets(const std::vector<nn::param_entry>& layout, index_t total, std::size_t elem,
                                        std::size_t bytes, std::size_t first_bytes, index_t max_elements = INT32_MAX) {
  std::vector<bucket> out;
  auto push = [&](index_t b, index_t e) {
    for (; e - b > max_elements; b += max_elements) {
      out.push_back({b, b + max_elements});
    }
    out.push_back({b, e});
  };
  index_t begin = 0;
  std::size_t limit = first_bytes;
  for (std::size_t i = 0; i < layout.size(); ++i) {
    const index_t end = i + 1 < layout.size() ? layout[i + 1].offset : total;
    if (static_cast<std::size_t>(end - begin) * elem >= limit || i + 1 == layout.size()) {
      push(begin, end);
      begin = end;
      limit = bytes;
    }
  }
  if (out.empty() && total > 0) {
    push(0, total);
  }
  return out;
}

}  // namespace dp::inline DP_ABI::dist
