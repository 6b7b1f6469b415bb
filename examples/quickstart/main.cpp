// The tensor basics: fused expressions, reductions, matmul, views.
#include <cmath>
#include <iostream>

#include <dp/dp.hpp>

int main() {
  const dp::device dev = dp::cpu();  // dp::cuda(0) in a file compiled by nvcc
  auto x = dp::randn<float>({1024, 256}, dev, /*seed=*/1);
  auto w = dp::randn<float>({256, 10}, dev, /*seed=*/2);
  auto y = dp::empty<float>({1024, 256}, dev);
  y = 2.f * x + dp::sin(x) * dp::exp(-x);  // one fused pass, no temporaries
  auto lazy = x * x;                       // an expression: holds x safely, evaluated when used
  const float ss = dp::sum(lazy).item();   // fused square-and-sum: x * x is never stored
  auto logits = dp::matmul(y, w);          // OpenBLAS here, cuBLAS on a GPU
  auto classes = dp::argmax(logits, 1);    // int64 class per row
  auto top = logits.slice(0, 0, 2);        // a view: first two rows, no copy
  std::cout << top << "\nsum of squares " << ss << ", rms " << std::sqrt(ss / x.numel()) << ", first class "
            << classes[0].item() << "\n";
}
