// Finite-difference gradient checks in float64: the gradient a trainer's traced backward computes
// against central differences of the loss evaluated by the eager forward (an independent path).
#pragma once

#include <cmath>
#include <tuple>
#include <utility>

#include <doctest/doctest.h>

#include <dp/dp.hpp>

namespace dp_test {

/// The loss through the trainer's eager forward (in its mode, training here: batch statistics, and
/// running statistics updated through nn::update as the traced step does).
template <class Loss, class Trainer, class... Args>
double eager_loss(const Trainer& t, const Loss& loss, const Args&... args) {
  auto all = std::forward_as_tuple(args...);
  constexpr std::size_t n = sizeof...(Args);
  auto out = [&]<std::size_t... I>(std::index_sequence<I...>) {
    return t(std::get<I>(all)...);
  }(std::make_index_sequence<n - 1>{});
  return static_cast<double>(dp::nn::detail::materialize(loss(out, std::get<n - 1>(all))).item());
}

/// Checks every parameter gradient (at most `per_param` elements of each) of `model` under `loss`.
template <class Model, class Loss, class... Args>
void gradcheck(Model model, const Loss& loss, const Args&... args) {
  dp::nn::trainer<Model> t{std::move(model)};
  const double traced = t.backward(loss, args...);
  const double eager = eager_loss(t, loss, args...);
  CHECK(traced == doctest::Approx(eager).epsilon(1e-10));
  const std::vector<double> g = dp::detail::trainer_access::flat_grads(t).to_vector();
  double* p = dp::detail::trainer_access::flat_params(t).data();
  constexpr double h = 1e-6;
  int bad = 0, checked = 0;
  for (const auto& e : t.layout()) {
    const dp::index_t n = e.shape.numel();
    const dp::index_t stride = n > 40 ? n / 40 : 1;
    for (dp::index_t i = 0; i < n; i += stride) {
      const dp::index_t k = e.offset + i;
      const double saved = p[k];
      p[k] = saved + h;
      const double lp = eager_loss(t, loss, args...);
      p[k] = saved - h;
      const double lm = eager_loss(t, loss, args...);
      p[k] = saved;
      const double fd = (lp - lm) / (2 * h);
      ++checked;
      if (!(std::fabs(fd - g[static_cast<std::size_t>(k)]) <= 1e-6 + 1e-5 * std::fabs(fd))) {
        if (bad++ < 5) {
          FAIL_CHECK(e.name << "[" << i << "]: backward " << g[static_cast<std::size_t>(k)] << ", finite difference "
                            << fd);
        }
      }
    }
  }
  CHECK(checked > 0);
  CHECK(bad == 0);
}

}  // namespace dp_test
