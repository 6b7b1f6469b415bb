// clip_grad_norm: scales all gradients so their global L2 norm is at most max_norm (PyTorch's
// clip_grad_norm_: coefficient max_norm / (norm + 1e-6), applied only when below 1). Returns the
// norm before clipping. Replicas hold equal gradients after synchronisation, so each clips its own.
// A norm that is not finite is refused (PyTorch's error_if_nonfinite=True): scaling by it would
// write NaN or zeros into every gradient. The refused step is undone as a non-finite loss is: its
// gradients dropped, the buffers its forward updated and the step count put back. Finite gradients
// whose squares overflow double still clip.
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
  try {
    dp::detail::replica_access::for_each_replica(owner, [&](std::size_t r, const tensor<T>&, const tensor<T>& grads) {
      // Squares summed in double: a float gradient of 2e19 would overflow the sum to inf.
      const auto g = dp::cast<double>(grads);
      const double squares = dp::sum(dp::square(g)).item();
      double n = std::sqrt(squares);
      bool finite = std::isfinite(squares);  // a NaN or infinite gradient makes the sum NaN or inf
      if (std::isinf(squares)) {
        // A double gradient from 1.3e154 on overflows its square: scale by the largest |g| first, as
        // LAPACK's nrm2 does. Only here, so that every norm the plain sum reaches keeps its bits.
        const double largest = dp::max(dp::abs(g)).item();
        finite = std::isfinite(largest);
        n = finite ? largest * std::sqrt(dp::sum(dp::square(g / largest)).item()) : largest;
      }
      DP_CHECK(finite, value_error, "dp: clip_grad_norm: the gradients' norm is ", n,
               ": a gradient is infinite or NaN, so scaling would give NaN or zero gradients; nothing was "
               "scaled and the gradients are dropped (check the loss and the learning rate)");
      DP_CHECK(std::isfinite(n), value_error,
               "dp: clip_grad_norm: the gradients are finite but their norm exceeds double's range; nothing was "
               "scaled and the gradients are dropped (check the loss and the learning rate)");
      if (r == 0) {
        norm = n;
      }
      const double coef = max_norm / (n + 1e-6);
      if (coef < 1) {
        tensor<T>(grads) *= static_cast<T>(coef);
      }
    });
  } catch (...) {  // every replica holds the same gradients, so all refused before scaling
    dp::detail::replica_access::undo_step(owner);  // the step fails whole: its buffer updates too
    throw;
  }
  return norm;
}

}  // namespace dp::inline DP_ABI::optim
