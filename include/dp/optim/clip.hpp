// clip_grad_norm: scales all gradients so their global L2 norm is at most max_norm (PyTorch's
// clip_grad_norm_: coefficient max_norm / (norm + 1e-6), applied only when below 1). Returns the
// norm before clipping. Replicas hold equal gradients after synchronisation, so each clips its own.
#pragma once

#include <cmath>

#include <dp/exec/reduce.hpp>
#include <dp/optim/optimizer.hpp>

namespace dp::inline DP_ABI::optim {

template <class Owner>
double clip_grad_norm(Owner& owner, double max_norm) {
  static_assert(detail::check_owner<Owner>());
  using T = typename detail::owner_value<Owner>::type;
  DP_CHECK(max_norm > 0, value_error, "dp: clip_grad_norm: max_norm is ", max_norm, "; expected a value > 0");
  detail::require_gradients(owner, "clip_grad_norm", detail::gradient_reader::clip_grad_norm);
  double norm = 0;
  dp::detail::replica_access::for_each_replica(owner, [&](std::size_t r, const tensor<T>&, const tensor<T>& grads) {
    const double n = std::sqrt(static_cast<double>(dp::sum(dp::square(grads)).item()));
    if (r == 0) {
      norm = n;
    }
    const double coef = max_norm / (n + 1e-6);
    if (coef < 1) {
      tensor<T>(grads) *= static_cast<T>(coef);
    }
  });
  return norm;
}

}  // namespace dp::inline DP_ABI::optim
