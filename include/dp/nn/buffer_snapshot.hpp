// A copy of a model's buffers, taken before a step's forward may change them (batch statistics,
// counters: nn::update) and put back when the step fails, so that a failed step leaves the model as
// it was.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
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
    for_each_buffer(model, [&](const std::string& name, auto& b) {
      live_.emplace_back(tensor<typename std::remove_cvref_t<decltype(b)>::value_type>(b.value()));
      names_.push_back(name);
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
  /// The name of the first buffer whose values differ, bit for bit, from the saved ones; "" when none
  /// does (or nothing was saved).
  std::string first_changed() const {
    for (std::size_t i = 0; i < saved_.size(); ++i) {
      const bool same = std::visit(
          [&](const auto& v) {
            const auto now = v.to_vector();
            const auto then = std::get<std::remove_cvref_t<decltype(v)>>(saved_[i]).to_vector();
            return now.size() == then.size() && std::memcmp(now.data(), then.data(), now.size() * sizeof(now[0])) == 0;
          },
          live_[i]);
      if (!same) {
        return names_[i];
      }
    }
    return "";
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
  std::vector<std::string> names_;
};

}  // namespace dp::inline DP_ABI::nn::detail
