// A model's module settings as 64-bit words, one per setting (nn::for_each_setting's order): what a
// trainer compares around edit and a checkpoint load (a traced step read the old values, so a
// change means tracing again), and what dp::parallel broadcasts so that every replica holds rank 0's.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <type_traits>
#include <vector>

#include <dp/nn/module.hpp>

namespace dp::inline DP_ABI::nn::detail {

template <class M>
std::vector<std::int64_t> settings_words(const M& model) {
  std::vector<std::int64_t> words;
  for_each_setting(model, [&](const std::string&, const auto& v) {
    std::int64_t w = 0;
    std::memcpy(&w, &v, sizeof v);
    words.push_back(w);
  });
  return words;
}

/// Writes `words` (settings_words of a model of the same type) into `model`; whether any changed.
template <class M>
bool apply_settings(M& model, const std::vector<std::int64_t>& words) {
  std::size_t i = 0;
  bool changed = false;
  for_each_setting(model, [&](const std::string&, auto& v) {
    std::remove_cvref_t<decltype(v)> x{};
    std::memcpy(&x, &words.at(i++), sizeof x);
    changed = changed || std::memcmp(&x, &v, sizeof x) != 0;
    v = x;
  });
  return changed;
}

}  // namespace dp::inline DP_ABI::nn::detail
