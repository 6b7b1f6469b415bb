// Aggregate reflection for models: how many members an aggregate has, references to them, and
// their names, with nothing but C++20 (brace-initialisation counting, structured bindings, and the
// name of a pointer to a member as it appears in __PRETTY_FUNCTION__). Up to 32 members. Also a
// type's readable name, for messages.
#pragma once

#include <array>
#include <cstddef>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>

#include <dp/config.hpp>

namespace dp::inline DP_ABI::nn::detail::reflect {

inline constexpr std::size_t max_fields = 32;

/// Converts to anything: one of these per initializer counts a member.
struct any_init {
  template <class T>
  constexpr operator T() const;  // NOLINT(google-explicit-constructor): declared only, never called
};

template <class T, std::size_t... I>
constexpr bool brace_constructible(std::index_sequence<I...>) {
  return requires { T{((void)I, any_init{})...}; };
}

/// Number of members of aggregate T as brace initialisation counts them, up to max_fields + 1.
template <class T, std::size_t N = 0>
constexpr std::size_t brace_count() {
  if constexpr (N > max_fields || !brace_constructible<T>(std::make_index_sequence<N + 1>{})) {
    return N;
  } else {
    return brace_count<T, N + 1>();
  }
}

/// Whether aggregate T has more members than reflection reaches (check_model reports it).
template <class T>
inline constexpr bool too_many_fields = brace_count<T>() > max_fields;

/// Number of members of aggregate T; 0 for one with more than max_fields, so that what visits its
/// members adds no error to the one that says so.
template <class T>
constexpr std::size_t field_count() {
  return too_many_fields<T> ? 0 : brace_count<T>();
}

template <class T>
struct wrapper {
  T value;
};
/// Declared, never defined: only its members' addresses are used, in constant expressions.
template <class T>
extern const wrapper<T> fake;

template <auto Ptr>
constexpr std::string_view pretty() {
  return __PRETTY_FUNCTION__;
}

/// The member name in a pretty-printed pointer "(& fake<M>.wrapper<M>::value.M::name)".
constexpr std::string_view member_from_pretty(std::string_view s) {
  const std::size_t end = s.find(')', s.find("Ptr = "));
  const std::string_view head = s.substr(0, end);
  const std::size_t colon = head.rfind("::");
  const std::size_t dot = head.rfind('.');
  const std::size_t start =
      (colon == std::string_view::npos || (dot != std::string_view::npos && dot > colon)) ? dot + 1 : colon + 2;
  return head.substr(start);
}

/// References to the N members of `obj`, as a tuple.
template <std::size_t N, class T>
constexpr auto tie_fields(T& obj) {
  if constexpr (N == 0) {
    return std::tuple<>{};
  } else if constexpr (N == 1) {
    auto& [m0] = obj;
    return std::tie(m0);
  } else if constexpr (N == 2) {
    auto& [m0, m1] = obj;
    return std::tie(m0, m1);
  } else if constexpr (N == 3) {
    auto& [m0, m1, m2] = obj;
    return std::tie(m0, m1, m2);
  } else if constexpr (N == 4) {
    auto& [m0, m1, m2, m3] = obj;
    return std::tie(m0, m1, m2, m3);
  } else if constexpr (N == 5) {
    auto& [m0, m1, m2, m3, m4] = obj;
    return std::tie(m0, m1, m2, m3, m4);
  } else if constexpr (N == 6) {
    auto& [m0, m1, m2, m3, m4, m5] = obj;
    return std::tie(m0, m1, m2, m3, m4, m5);
  } else if constexpr (N == 7) {
    auto& [m0, m1, m2, m3, m4, m5, m6] = obj;
    return std::tie(m0, m1, m2, m3, m4, m5, m6);
  } else if constexpr (N == 8) {
    auto& [m0, m1, m2, m3, m4, m5, m6, m7] = obj;
    return std::tie(m0, m1, m2, m3, m4, m5, m6, m7);
  } else if constexpr (N == 9) {
    auto& [m0, m1, m2, m3, m4, m5, m6, m7, m8] = obj;
    return std::tie(m0, m1, m2, m3, m4, m5, m6, m7, m8);
  } else if constexpr (N == 10) {
    auto& [m0, m1, m2, m3, m4, m5, m6, m7, m8, m9] = obj;
    return std::tie(m0, m1, m2, m3, m4, m5, m6, m7, m8, m9);
  } else if constexpr (N == 11) {
    auto& [m0, m1, m2, m3, m4, m5, m6, m7, m8, m9, m10] = obj;
    return std::tie(m0, m1, m2, m3, m4, m5, m6, m7, m8, m9, m10);
  } else if constexpr (N == 12) {
    auto& [m0, m1, m2, m3, m4, m5, m6, m7, m8, m9, m10, m11] = obj;
    return std::tie(m0, m1, m2, m3, m4, m5, m6, m7, m8, m9, m10, m11);
  } else if constexpr (N == 13) {
    auto& [m0, m1, m2, m3, m4, m5, m6, m7, m8, m9, m10, m11, m12] = obj;
    return std::tie(m0, m1, m2, m3, m4, m5, m6, m7, m8, m9, m10, m11, m12);
  } else if constexpr (N == 14) {
    auto& [m0, m1, m2, m3, m4, m5, m6, m7, m8, m9, m10, m11, m12, m13] = obj;
    return std::tie(m0, m1, m2, m3, m4, m5, m6, m7, m8, m9, m10, m11, m12, m13);
  } else if constexpr (N == 15) {
    auto& [m0, m1, m2, m3, m4, m5, m6, m7, m8, m9, m10, m11, m12, m13, m14] = obj;
    return std::tie(m0, m1, m2, m3, m4, m5, m6, m7, m8, m9, m10, m11, m12, m13, m14);
  } else if constexpr (N == 16) {
    auto& [m0, m1, m2, m3, m4, m5, m6, m7, m8, m9, m10, m11, m12, m13, m14, m15] = obj;
    return std::tie(m0, m1, m2, m3, m4, m5, m6, m7, m8, m9, m10, m11, m12, m13, m14, m15);
  } else if constexpr (N == 17) {
    auto& [m0, m1, m2, m3, m4, m5, m6, m7, m8, m9, m10, m11, m12, m13, m14, m15, m16] = obj;
    return std::tie(m0, m1, m2, m3, m4, m5, m6, m7, m8, m9, m10, m11, m12, m13, m14, m15, m16);
  } else if constexpr (N == 18) {
    auto& [m0, m1, m2, m3, m4, m5, m6, m7, m8, m9, m10, m11, m12, m13, m14, m15, m16, m17] = obj;
    return std::tie(m0, m1, m2, m3, m4, m5, m6, m7, m8, m9, m10, m11, m12, m13, m14, m15, m16, m17);
  } else if constexpr (N == 19) {
    auto& [m0, m1, m2, m3, m4, m5, m6, m7, m8, m9, m10, m11, m12, m13, m14, m15, m16, m17, m18] = obj;
    return std::tie(m0, m1, m2, m3, m4, m5, m6, m7, m8, m9, m10, m11, m12, m13, m14, m15, m16, m17, m18);
  } else if constexpr (N == 20) {
    auto& [m0, m1, m2, m3, m4, m5, m6, m7, m8, m9, m10, m11, m12, m13, m14, m15, m16, m17, m18, m19] = obj;
    return std::tie(m0, m1, m2, m3, m4, m5, m6, m7, m8, m9, m10, m11, m12, m13, m14, m15, m16, m17, m18, m19);
  } else if constexpr (N == 21) {
    auto& [m0, m1, m2, m3, m4, m5, m6, m7, m8, m9, m10, m11, m12, m13, m14, m15, m16, m17, m18, m19, m20] = obj;
    return std::tie(m0, m1, m2, m3, m4, m5, m6, m7, m8, m9, m10, m11, m12, m13, m14, m15, m16, m17, m18, m19, m20);
  } else if constexpr (N == 22) {
    auto& [m0, m1, m2, m3, m4, m5, m6, m7, m8, m9, m10, m11, m12, m13, m14, m15, m16, m17, m18, m19, m20, m21] = obj;
    return std::tie(m0, m1, m2, m3, m4, m5, m6, m7, m8, m9, m10, m11, m12, m13, m14, m15, m16, m17, m18, m19, m20, m21);
  } else if constexpr (N == 23) {
    auto& [m0, m1, m2, m3, m4, m5, m6, m7, m8, m9, m10, m11, m12, m13, m14, m15, m16, m17, m18, m19, m20, m21, m22] =
        obj;
    return std::tie(m0, m1, m2, m3, m4, m5, m6, m7, m8, m9, m10, m11, m12, m13, m14, m15, m16, m17, m18, m19, m20, m21,
                    m22);
  } else if constexpr (N == 24) {
    auto& [m0, m1, m2, m3, m4, m5, m6, m7, m8, m9, m10, m11, m12, m13, m14, m15, m16, m17, m18, m19, m20, m21, m22,
           m23] = obj;
    return std::tie(m0, m1, m2, m3, m4, m5, m6, m7, m8, m9, m10, m11, m12, m13, m14, m15, m16, m17, m18, m19, m20, m21,
                    m22, m23);
  } else if constexpr (N == 25) {
    auto& [m0, m1, m2, m3, m4, m5, m6, m7, m8, m9, m10, m11, m12, m13, m14, m15, m16, m17, m18, m19, m20, m21, m22, m23,
           m24] = obj;
    return std::tie(m0, m1, m2, m3, m4, m5, m6, m7, m8, m9, m10, m11, m12, m13, m14, m15, m16, m17, m18, m19, m20, m21,
                    m22, m23, m24);
  } else if constexpr (N == 26) {
    auto& [m0, m1, m2, m3, m4, m5, m6, m7, m8, m9, m10, m11, m12, m13, m14, m15, m16, m17, m18, m19, m20, m21, m22, m23,
           m24, m25] = obj;
    return std::tie(m0, m1, m2, m3, m4, m5, m6, m7, m8, m9, m10, m11, m12, m13, m14, m15, m16, m17, m18, m19, m20, m21,
                    m22, m23, m24, m25);
  } else if constexpr (N == 27) {
    auto& [m0, m1, m2, m3, m4, m5, m6, m7, m8, m9, m10, m11, m12, m13, m14, m15, m16, m17, m18, m19, m20, m21, m22, m23,
           m24, m25, m26] = obj;
    return std::tie(m0, m1, m2, m3, m4, m5, m6, m7, m8, m9, m10, m11, m12, m13, m14, m15, m16, m17, m18, m19, m20, m21,
                    m22, m23, m24, m25, m26);
  } else if constexpr (N == 28) {
    auto& [m0, m1, m2, m3, m4, m5, m6, m7, m8, m9, m10, m11, m12, m13, m14, m15, m16, m17, m18, m19, m20, m21, m22, m23,
           m24, m25, m26, m27] = obj;
    return std::tie(m0, m1, m2, m3, m4, m5, m6, m7, m8, m9, m10, m11, m12, m13, m14, m15, m16, m17, m18, m19, m20, m21,
                    m22, m23, m24, m25, m26, m27);
  } else if constexpr (N == 29) {
    auto& [m0, m1, m2, m3, m4, m5, m6, m7, m8, m9, m10, m11, m12, m13, m14, m15, m16, m17, m18, m19, m20, m21, m22, m23,
           m24, m25, m26, m27, m28] = obj;
    return std::tie(m0, m1, m2, m3, m4, m5, m6, m7, m8, m9, m10, m11, m12, m13, m14, m15, m16, m17, m18, m19, m20, m21,
                    m22, m23, m24, m25, m26, m27, m28);
  } else if constexpr (N == 30) {
    auto& [m0, m1, m2, m3, m4, m5, m6, m7, m8, m9, m10, m11, m12, m13, m14, m15, m16, m17, m18, m19, m20, m21, m22, m23,
           m24, m25, m26, m27, m28, m29] = obj;
    return std::tie(m0, m1, m2, m3, m4, m5, m6, m7, m8, m9, m10, m11, m12, m13, m14, m15, m16, m17, m18, m19, m20, m21,
                    m22, m23, m24, m25, m26, m27, m28, m29);
  } else if constexpr (N == 31) {
    auto& [m0, m1, m2, m3, m4, m5, m6, m7, m8, m9, m10, m11, m12, m13, m14, m15, m16, m17, m18, m19, m20, m21, m22, m23,
           m24, m25, m26, m27, m28, m29, m30] = obj;
    return std::tie(m0, m1, m2, m3, m4, m5, m6, m7, m8, m9, m10, m11, m12, m13, m14, m15, m16, m17, m18, m19, m20, m21,
                    m22, m23, m24, m25, m26, m27, m28, m29, m30);
  } else if constexpr (N == 32) {
    auto& [m0, m1, m2, m3, m4, m5, m6, m7, m8, m9, m10, m11, m12, m13, m14, m15, m16, m17, m18, m19, m20, m21, m22, m23,
           m24, m25, m26, m27, m28, m29, m30, m31] = obj;
    return std::tie(m0, m1, m2, m3, m4, m5, m6, m7, m8, m9, m10, m11, m12, m13, m14, m15, m16, m17, m18, m19, m20, m21,
                    m22, m23, m24, m25, m26, m27, m28, m29, m30, m31);
  } else {
    static_assert(N <= max_fields, "dp: internal: tie_fields past max_fields (field_count never gives that)");
    return std::tuple<>{};
  }
}

/// The names of the members whose addresses are given, in order.
template <auto... Ptr>
constexpr std::array<std::string_view, sizeof...(Ptr)> names_of() {
  return {member_from_pretty(pretty<Ptr>())...};
}

/// The names of aggregate T's members, in order (constant expressions): one branch per member count.
/// Each binding's address is a template argument right where it is bound: the form nvcc's front end
/// accepts.
template <class T>
constexpr auto field_names() {
  constexpr std::size_t n = field_count<T>();
  if constexpr (n == 0) {
    return std::array<std::string_view, 0>{};
  } else if constexpr (n == 1) {
    auto& [m0] = fake<T>.value;
    return names_of<&m0>();
  } else if constexpr (n == 2) {
    auto& [m0, m1] = fake<T>.value;
    return names_of<&m0, &m1>();
  } else if constexpr (n == 3) {
    auto& [m0, m1, m2] = fake<T>.value;
    return names_of<&m0, &m1, &m2>();
  } else if constexpr (n == 4) {
    auto& [m0, m1, m2, m3] = fake<T>.value;
    return names_of<&m0, &m1, &m2, &m3>();
  } else if constexpr (n == 5) {
    auto& [m0, m1, m2, m3, m4] = fake<T>.value;
    return names_of<&m0, &m1, &m2, &m3, &m4>();
  } else if constexpr (n == 6) {
    auto& [m0, m1, m2, m3, m4, m5] = fake<T>.value;
    return names_of<&m0, &m1, &m2, &m3, &m4, &m5>();
  } else if constexpr (n == 7) {
    auto& [m0, m1, m2, m3, m4, m5, m6] = fake<T>.value;
    return names_of<&m0, &m1, &m2, &m3, &m4, &m5, &m6>();
  } else if constexpr (n == 8) {
    auto& [m0, m1, m2, m3, m4, m5, m6, m7] = fake<T>.value;
    return names_of<&m0, &m1, &m2, &m3, &m4, &m5, &m6, &m7>();
  } else if constexpr (n == 9) {
    auto& [m0, m1, m2, m3, m4, m5, m6, m7, m8] = fake<T>.value;
    return names_of<&m0, &m1, &m2, &m3, &m4, &m5, &m6, &m7, &m8>();
  } else if constexpr (n == 10) {
    auto& [m0, m1, m2, m3, m4, m5, m6, m7, m8, m9] = fake<T>.value;
    return names_of<&m0, &m1, &m2, &m3, &m4, &m5, &m6, &m7, &m8, &m9>();
  } else if constexpr (n == 11) {
    auto& [m0, m1, m2, m3, m4, m5, m6, m7, m8, m9, m10] = fake<T>.value;
    return names_of<&m0, &m1, &m2, &m3, &m4, &m5, &m6, &m7, &m8, &m9, &m10>();
  } else if constexpr (n == 12) {
    auto& [m0, m1, m2, m3, m4, m5, m6, m7, m8, m9, m10, m11] = fake<T>.value;
    return names_of<&m0, &m1, &m2, &m3, &m4, &m5, &m6, &m7, &m8, &m9, &m10, &m11>();
  } else if constexpr (n == 13) {
    auto& [m0, m1, m2, m3, m4, m5, m6, m7, m8, m9, m10, m11, m12] = fake<T>.value;
    return names_of<&m0, &m1, &m2, &m3, &m4, &m5, &m6, &m7, &m8, &m9, &m10, &m11, &m12>();
  } else if constexpr (n == 14) {
    auto& [m0, m1, m2, m3, m4, m5, m6, m7, m8, m9, m10, m11, m12, m13] = fake<T>.value;
    return names_of<&m0, &m1, &m2, &m3, &m4, &m5, &m6, &m7, &m8, &m9, &m10, &m11, &m12, &m13>();
  } else if constexpr (n == 15) {
    auto& [m0, m1, m2, m3, m4, m5, m6, m7, m8, m9, m10, m11, m12, m13, m14] = fake<T>.value;
    return names_of<&m0, &m1, &m2, &m3, &m4, &m5, &m6, &m7, &m8, &m9, &m10, &m11, &m12, &m13, &m14>();
  } else if constexpr (n == 16) {
    auto& [m0, m1, m2, m3, m4, m5, m6, m7, m8, m9, m10, m11, m12, m13, m14, m15] = fake<T>.value;
    return names_of<&m0, &m1, &m2, &m3, &m4, &m5, &m6, &m7, &m8, &m9, &m10, &m11, &m12, &m13, &m14, &m15>();
  } else if constexpr (n == 17) {
    auto& [m0, m1, m2, m3, m4, m5, m6, m7, m8, m9, m10, m11, m12, m13, m14, m15, m16] = fake<T>.value;
    return names_of<&m0, &m1, &m2, &m3, &m4, &m5, &m6, &m7, &m8, &m9, &m10, &m11, &m12, &m13, &m14, &m15, &m16>();
  } else if constexpr (n == 18) {
    auto& [m0, m1, m2, m3, m4, m5, m6, m7, m8, m9, m10, m11, m12, m13, m14, m15, m16, m17] = fake<T>.value;
    return names_of<&m0, &m1, &m2, &m3, &m4, &m5, &m6, &m7, &m8, &m9, &m10, &m11, &m12, &m13, &m14, &m15, &m16, &m17>();
  } else if constexpr (n == 19) {
    auto& [m0, m1, m2, m3, m4, m5, m6, m7, m8, m9, m10, m11, m12, m13, m14, m15, m16, m17, m18] = fake<T>.value;
    return names_of<&m0, &m1, &m2, &m3, &m4, &m5, &m6, &m7, &m8, &m9, &m10, &m11, &m12, &m13, &m14, &m15, &m16, &m17,
                    &m18>();
  } else if constexpr (n == 20) {
    auto& [m0, m1, m2, m3, m4, m5, m6, m7, m8, m9, m10, m11, m12, m13, m14, m15, m16, m17, m18, m19] = fake<T>.value;
    return names_of<&m0, &m1, &m2, &m3, &m4, &m5, &m6, &m7, &m8, &m9, &m10, &m11, &m12, &m13, &m14, &m15, &m16, &m17,
                    &m18, &m19>();
  } else if constexpr (n == 21) {
    auto& [m0, m1, m2, m3, m4, m5, m6, m7, m8, m9, m10, m11, m12, m13, m14, m15, m16, m17, m18, m19, m20] =
        fake<T>.value;
    return names_of<&m0, &m1, &m2, &m3, &m4, &m5, &m6, &m7, &m8, &m9, &m10, &m11, &m12, &m13, &m14, &m15, &m16, &m17,
                    &m18, &m19, &m20>();
  } else if constexpr (n == 22) {
    auto& [m0, m1, m2, m3, m4, m5, m6, m7, m8, m9, m10, m11, m12, m13, m14, m15, m16, m17, m18, m19, m20, m21] =
        fake<T>.value;
    return names_of<&m0, &m1, &m2, &m3, &m4, &m5, &m6, &m7, &m8, &m9, &m10, &m11, &m12, &m13, &m14, &m15, &m16, &m17,
                    &m18, &m19, &m20, &m21>();
  } else if constexpr (n == 23) {
    auto& [m0, m1, m2, m3, m4, m5, m6, m7, m8, m9, m10, m11, m12, m13, m14, m15, m16, m17, m18, m19, m20, m21, m22] =
        fake<T>.value;
    return names_of<&m0, &m1, &m2, &m3, &m4, &m5, &m6, &m7, &m8, &m9, &m10, &m11, &m12, &m13, &m14, &m15, &m16, &m17,
                    &m18, &m19, &m20, &m21, &m22>();
  } else if constexpr (n == 24) {
    auto& [m0, m1, m2, m3, m4, m5, m6, m7, m8, m9, m10, m11, m12, m13, m14, m15, m16, m17, m18, m19, m20, m21, m22,
           m23] = fake<T>.value;
    return names_of<&m0, &m1, &m2, &m3, &m4, &m5, &m6, &m7, &m8, &m9, &m10, &m11, &m12, &m13, &m14, &m15, &m16, &m17,
                    &m18, &m19, &m20, &m21, &m22, &m23>();
  } else if constexpr (n == 25) {
    auto& [m0, m1, m2, m3, m4, m5, m6, m7, m8, m9, m10, m11, m12, m13, m14, m15, m16, m17, m18, m19, m20, m21, m22, m23,
           m24] = fake<T>.value;
    return names_of<&m0, &m1, &m2, &m3, &m4, &m5, &m6, &m7, &m8, &m9, &m10, &m11, &m12, &m13, &m14, &m15, &m16, &m17,
                    &m18, &m19, &m20, &m21, &m22, &m23, &m24>();
  } else if constexpr (n == 26) {
    auto& [m0, m1, m2, m3, m4, m5, m6, m7, m8, m9, m10, m11, m12, m13, m14, m15, m16, m17, m18, m19, m20, m21, m22, m23,
           m24, m25] = fake<T>.value;
    return names_of<&m0, &m1, &m2, &m3, &m4, &m5, &m6, &m7, &m8, &m9, &m10, &m11, &m12, &m13, &m14, &m15, &m16, &m17,
                    &m18, &m19, &m20, &m21, &m22, &m23, &m24, &m25>();
  } else if constexpr (n == 27) {
    auto& [m0, m1, m2, m3, m4, m5, m6, m7, m8, m9, m10, m11, m12, m13, m14, m15, m16, m17, m18, m19, m20, m21, m22, m23,
           m24, m25, m26] = fake<T>.value;
    return names_of<&m0, &m1, &m2, &m3, &m4, &m5, &m6, &m7, &m8, &m9, &m10, &m11, &m12, &m13, &m14, &m15, &m16, &m17,
                    &m18, &m19, &m20, &m21, &m22, &m23, &m24, &m25, &m26>();
  } else if constexpr (n == 28) {
    auto& [m0, m1, m2, m3, m4, m5, m6, m7, m8, m9, m10, m11, m12, m13, m14, m15, m16, m17, m18, m19, m20, m21, m22, m23,
           m24, m25, m26, m27] = fake<T>.value;
    return names_of<&m0, &m1, &m2, &m3, &m4, &m5, &m6, &m7, &m8, &m9, &m10, &m11, &m12, &m13, &m14, &m15, &m16, &m17,
                    &m18, &m19, &m20, &m21, &m22, &m23, &m24, &m25, &m26, &m27>();
  } else if constexpr (n == 29) {
    auto& [m0, m1, m2, m3, m4, m5, m6, m7, m8, m9, m10, m11, m12, m13, m14, m15, m16, m17, m18, m19, m20, m21, m22, m23,
           m24, m25, m26, m27, m28] = fake<T>.value;
    return names_of<&m0, &m1, &m2, &m3, &m4, &m5, &m6, &m7, &m8, &m9, &m10, &m11, &m12, &m13, &m14, &m15, &m16, &m17,
                    &m18, &m19, &m20, &m21, &m22, &m23, &m24, &m25, &m26, &m27, &m28>();
  } else if constexpr (n == 30) {
    auto& [m0, m1, m2, m3, m4, m5, m6, m7, m8, m9, m10, m11, m12, m13, m14, m15, m16, m17, m18, m19, m20, m21, m22, m23,
           m24, m25, m26, m27, m28, m29] = fake<T>.value;
    return names_of<&m0, &m1, &m2, &m3, &m4, &m5, &m6, &m7, &m8, &m9, &m10, &m11, &m12, &m13, &m14, &m15, &m16, &m17,
                    &m18, &m19, &m20, &m21, &m22, &m23, &m24, &m25, &m26, &m27, &m28, &m29>();
  } else if constexpr (n == 31) {
    auto& [m0, m1, m2, m3, m4, m5, m6, m7, m8, m9, m10, m11, m12, m13, m14, m15, m16, m17, m18, m19, m20, m21, m22, m23,
           m24, m25, m26, m27, m28, m29, m30] = fake<T>.value;
    return names_of<&m0, &m1, &m2, &m3, &m4, &m5, &m6, &m7, &m8, &m9, &m10, &m11, &m12, &m13, &m14, &m15, &m16, &m17,
                    &m18, &m19, &m20, &m21, &m22, &m23, &m24, &m25, &m26, &m27, &m28, &m29, &m30>();
  } else if constexpr (n == 32) {
    auto& [m0, m1, m2, m3, m4, m5, m6, m7, m8, m9, m10, m11, m12, m13, m14, m15, m16, m17, m18, m19, m20, m21, m22, m23,
           m24, m25, m26, m27, m28, m29, m30, m31] = fake<T>.value;
    return names_of<&m0, &m1, &m2, &m3, &m4, &m5, &m6, &m7, &m8, &m9, &m10, &m11, &m12, &m13, &m14, &m15, &m16, &m17,
                    &m18, &m19, &m20, &m21, &m22, &m23, &m24, &m25, &m26, &m27, &m28, &m29, &m30, &m31>();
  } else {
    static_assert(n <= max_fields, "dp: internal: field_names past max_fields (field_count never gives that)");
    return std::array<std::string_view, 0>{};
  }
}

/// The name of member I of aggregate T (empty past the last member).
template <class T, std::size_t I>
constexpr std::string_view field_name() {
  constexpr auto names = field_names<T>();
  if constexpr (I < names.size()) {
    return names[I];
  } else {
    return {};
  }
}

template <class T, std::size_t I>
inline constexpr std::string_view field_name_v = field_name<T, I>();

template <class T>
constexpr std::string_view pretty_type() {
  return __PRETTY_FUNCTION__;
}

/// Where a type's name sits in pretty_type's text, learnt from a type whose name is known: the text
/// around it is the same for every type, whatever the compiler's format.
struct type_name_frame {
  std::size_t before = 0, after = 0;
};
inline constexpr type_name_frame name_frame = [] {
  constexpr std::string_view probe = pretty_type<double>(), known = "double";
  static_assert(probe.find(known) != std::string_view::npos && probe.find(known) == probe.rfind(known),
                "dp: pretty_type's text does not name its type once; type_name needs another way to find it");
  return type_name_frame{probe.find(known), probe.size() - probe.find(known) - known.size()};
}();

#define DP_REFLECT_STR2(x) #x
#define DP_REFLECT_STR(x) DP_REFLECT_STR2(x)
/// T's name for messages ("classifier", "nn::sequential<nn::linear<64, 128, float, true>, ...>"):
/// as the compiler spells it, without dp's build namespace and anonymous namespaces.
template <class T>
std::string type_name() {
  constexpr std::string_view p = pretty_type<T>();
  std::string n(p.substr(name_frame.before, p.size() - name_frame.before - name_frame.after));
  for (const std::string_view noise :
       {"dp::" DP_REFLECT_STR(DP_ABI) "::", "(anonymous namespace)::", "{anonymous}::"}) {
    for (auto at = n.find(noise); at != std::string::npos; at = n.find(noise)) {
      n.erase(at, noise.size());
    }
  }
  return n;
}
#undef DP_REFLECT_STR
#undef DP_REFLECT_STR2

}  // namespace dp::inline DP_ABI::nn::detail::reflect
