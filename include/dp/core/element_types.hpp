// The element types a model keeps and a training step passes: float and double (parameters,
// activations) and std::int64_t (class indices, counters). One list, so that buffers, traced slots,
// step arguments, the replicas' buffer synchronisation and the communicators' erased tensors accept
// the same types; a type added here reaches all of them.
#pragma once

#include <cstdint>
#include <type_traits>
#include <variant>

#include <dp/config.hpp>
#include <dp/core/tensor.hpp>

namespace dp::inline DP_ABI::detail {

template <class... T>
struct type_list {};

using model_element_types = type_list<float, double, std::int64_t>;

template <class T, class List>
struct index_in;
template <class T, class... U>
struct index_in<T, type_list<U...>> {
  static constexpr int value = [] {
    constexpr bool same[] = {std::is_same_v<T, U>...};
    for (int i = 0; i < static_cast<int>(sizeof...(U)); ++i) {
      if (same[i]) {
        return i;
      }
    }
    return -1;
  }();
};

/// T's position in model_element_types (float 0, double 1, std::int64_t 2), -1 for any other type.
template <class T>
inline constexpr int model_element_index = index_in<T, model_element_types>::value;

/// Whether a model may keep elements of type T (in a buffer; parameters are the floating ones).
template <class T>
inline constexpr bool model_element = model_element_index<T> >= 0;

template <template <class...> class Outer, template <class> class Wrap, class List>
struct apply_over;
template <template <class...> class Outer, template <class> class Wrap, class... T>
struct apply_over<Outer, Wrap, type_list<T...>> {
  using type = Outer<Wrap<T>...>;
};

/// Outer<Wrap<float>, Wrap<double>, Wrap<std::int64_t>>: a variant or tuple with one alternative
/// or member per model element type.
template <template <class...> class Outer, template <class> class Wrap>
using over_model_elements = typename apply_over<Outer, Wrap, model_element_types>::type;

template <class T>
using tensor_of = tensor<T>;
template <class T>
using tensor_pointer = tensor<T>*;
template <class T>
using const_tensor_pointer = const tensor<T>*;

/// A tensor of any model element type (a buffer, whatever its type).
using any_model_tensor = over_model_elements<std::variant, tensor_of>;

}  // namespace dp::inline DP_ABI::detail
