// A copy of a model's buffers, taken before a training step changes them (batch statistics,
// counters) and put back when the step fails, so that a failed step leaves the model as it was.
#pragma once

#include <cstdint>
#include <variant>
#include <vector>

#include <dp/core/element_types.hpp>
#include <dp/core/tensor.hpp>
#include <dp/core/write_guard.hpp>
#include <dp/nn/module.hpp>

namespace dp::inline DP_ABI::nn::detail {

class buffer_snapshot {
 public:
  buffer_snapshot() = default;
  /// Finds `model`'s buffers once (their storage never moves).
  template <class Model>
  explicit buffer_snapshot(Model& model) {
    for_each_buffer(model, [&](const std::string&, auto& b) {
      live_.emplace_back(tensor<typename std::remove_cvref_t<decltype(b)>::value_type>(b.value()));
    });
  }

  bool empty() const noexcept { return live_.empty(); }

  /// Keeps every buffer's values (the copies are made once, then written over).
  void save() {
    if (saved_.size() != live_.size()) {
      saved_.clear();
      for (auto& t : live_) {
        saved_.push_back(std::visit([](auto& v) -> any_tensor { return v.clone(); }, t));
      }
      return;
    }
    for (std::size_t i = 0; i < live_.size(); ++i) {
      std::visit([&](auto& v) { std::get<std::remove_cvref_t<decltype(v)>>(saved_[i]).assign(v); }, live_[i]);
    }
  }
  /// Puts the saved values back.
  void restore() {
    const dp::detail::owner_write_scope owner;  // a trainer puts its own buffers back
    for (std::size_t i = 0; i < saved_.size(); ++i) {
      std::visit([&](auto& v) { v.assign(std::get<std::remove_cvref_t<decltype(v)>>(saved_[i])); }, live_[i]);
    }
  }

 private:
  using any_tensor = dp::detail::any_model_tensor;
  std::vector<any_tensor> live_, saved_;
};

}  // namespace dp::inline DP_ABI::nn::detail
