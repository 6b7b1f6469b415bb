// What the CUDA tests share: every GPU result is compared with the host executor's on the same input.
#pragma once

#include <cmath>
#include <vector>

#include <doctest/doctest.h>

#include <dp/dp.hpp>

namespace dp_cuda_test {

/// Element-wise |a - b| <= tol (1 + |b|), counting the elements that are not (NaN never passes).
template <class T>
void check_same(const std::vector<T>& a, const std::vector<T>& b, double tol) {
  REQUIRE(a.size() == b.size());
  int bad = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const double x = static_cast<double>(a[i]), y = static_cast<double>(b[i]);
    bad += !(std::fabs(x - y) <= tol * (1 + std::fabs(y)));
  }
  CHECK(bad == 0);
}

/// The same tensor on the GPU and on the host.
template <class T>
dp::tensor<T> on_gpu(const dp::tensor<T>& host) {
  return host.to(dp::cuda(0));
}

}  // namespace dp_cuda_test
