// nn::sequential<L...>: layers applied in order, flat (no nested layer types in error messages),
// with the widths of consecutive layers checked at compile time. Members are named 0, 1, 2, ... as in
// PyTorch's nn.Sequential.
#pragma once

#include <cstddef>
#include <string_view>
#include <tuple>
#include <utility>

#include <dp/nn/module.hpp>
#include <dp/nn/width.hpp>

namespace dp::inline DP_ABI::nn {

namespace detail {

// The compiler prints this type's arguments: (layer index, what it takes, previous layer, what it gives).
template <std::size_t Layer, index_t Takes, std::size_t Previous, index_t Gives>
struct sequential_width_mismatch {
  static_assert(Takes == Gives,
                "dp: sequential layer <Layer> takes <Takes> features but layer <Previous> gives <Gives> (the "
                "numbers are the template arguments of sequential_width_mismatch above); make the widths agree");
  static constexpr bool value = true;
};

/// Walks the layers, carrying the width the last width-setting layer (`Prev`) gives. Widths on
/// different axes (a conv2d's channels, a linear's last dimension) are not compared; the width at
/// the end is the sequential's own out_features.
template <std::size_t I, std::size_t Prev, width W, class... L>
constexpr width check_widths() {
  if constexpr (I == sizeof...(L)) {
    return W;
  } else {
    using Li = std::tuple_element_t<I, std::tuple<L...>>;
    constexpr index_t takes = in_width<Li>();
    constexpr bool compared = W.size != 0 && takes != 0 && same_axis(W.axis, in_axis<Li>());
    if constexpr (compared) {
      static_assert(sequential_width_mismatch<I, takes, Prev, W.size>::value);
    }
    if constexpr (preserves<Li>(W.axis)) {
      return check_widths<I + 1, Prev, W, L...>();
    } else {
      // A layer on either axis (batch_norm) keeps the axis it was given.
      constexpr width_axis axis = out_axis<Li>() == width_axis::either && compared ? W.axis : out_axis<Li>();
      return check_widths<I + 1, I, width{out_width<Li>(), axis}, L...>();
    }
  }
}

inline constexpr std::string_view index_names[] = {
    "0",  "1",  "2",  "3",  "4",  "5",  "6",  "7",  "8",  "9",  "10", "11", "12", "13", "14", "15",
    "16", "17", "18", "19", "20", "21", "22", "23", "24", "25", "26", "27", "28", "29", "30", "31",
    "32", "33", "34", "35", "36", "37", "38", "39", "40", "41", "42", "43", "44", "45", "46", "47",
    "48", "49", "50", "51", "52", "53", "54", "55", "56", "57", "58", "59", "60", "61", "62", "63"};

template <class L, class = void>
struct value_type_or_void {
  using type = void;
};
template <class L>
struct value_type_or_void<L, std::void_t<typename L::value_type>> {
  using type = typename L::value_type;
};
template <class... L>
struct first_value_type {
  using type = void;
};
template <class L0, class... L>
struct first_value_type<L0, L...> {
  using own = typename value_type_or_void<L0>::type;
  using type = std::conditional_t<std::is_void_v<own>, typename first_value_type<L...>::type, own>;
};

}  // namespace detail

template <class... L>
struct sequential {
  static_assert(sizeof...(L) > 0, "dp: sequential needs at least one layer");
  static_assert(sizeof...(L) <= 64, "dp: sequential holds at most 64 layers; nest sequentials for more");
  static constexpr detail::width ends = detail::check_widths<0, 0, detail::width{}, L...>();
  static_assert(ends.size >= 0);  // a static member's initializer runs only when used: this runs the check

  using value_type = std::conditional_t<std::is_void_v<typename detail::first_value_type<L...>::type>, float,
                                        typename detail::first_value_type<L...>::type>;
  static constexpr index_t in_features = detail::in_width<std::tuple_element_t<0, std::tuple<L...>>>();
  static constexpr width_axis in_features_axis = detail::in_axis<std::tuple_element_t<0, std::tuple<L...>>>();
  static constexpr index_t out_features = ends.size;
  static constexpr width_axis out_features_axis = ends.axis;

  std::tuple<L...> layers;

  static void dp_members(auto& self, auto&& f) {
    [&]<std::size_t... I>(std::index_sequence<I...>) {
      (f(detail::index_names[I], std::get<I>(self.layers)), ...);
    }(std::index_sequence_for<L...>{});
  }

  template <std::size_t I>
  auto& get() noexcept {
    return std::get<I>(layers);
  }
  template <std::size_t I>
  const auto& get() const noexcept {
    return std::get<I>(layers);
  }

  template <class X>
  auto forward(const X& x) const {
    return apply<0>(x);
  }
  template <class X>
  auto operator()(const X& x) const {
    return forward(x);
  }

 private:
  template <std::size_t I, class X>
  auto apply(const X& x) const {
    if constexpr (I + 1 == sizeof...(L)) {
      return std::get<I>(layers).forward(x);
    } else {
      return apply<I + 1>(std::get<I>(layers).forward(x));
    }
  }
};

}  // namespace dp::inline DP_ABI::nn
