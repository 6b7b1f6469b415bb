// The module concept and its visitors. A model is either a library module (which lists its members
// through `dp_members`) or an aggregate whose every member is a module, an nn::parameter or an
// nn::buffer; members and their names are found by reflection, so none can be forgotten. Names nest
// with dots and equal PyTorch's for the same structure (fc1.weight, bn.running_mean, 0.weight).
#pragma once

#include <algorithm>
#include <cstddef>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include <dp/core/model_state.hpp>
#include <dp/core/tensor.hpp>
#include <dp/nn/parameter.hpp>
#include <dp/nn/reflect.hpp>

namespace dp::inline DP_ABI::nn {
namespace detail {

/// A callable standing in for a member visitor in concepts (no lambdas in unevaluated operands:
/// nvcc's front end does not accept them there).
struct member_probe {
  template <class X>
  void operator()(std::string_view, X&) const {}
};

/// A library module names its members: `static void dp_members(auto& self, auto&& f)` calls
/// f(name, member) for each parameter, buffer and submodule.
template <class M>
concept declares_members = requires(M& m) { M::dp_members(m, member_probe{}); };

/// A library module names its settings, the plain values its forward reads (dropout's p):
/// `static void dp_settings(auto& self, auto&& f)` calls f(name, value) for each.
template <class M>
concept declares_settings = requires(M& m) { M::dp_settings(m, member_probe{}); };

template <class X>
struct is_dp_tensor : std::false_type {};
template <class T, class E>
struct is_dp_tensor<dp::tensor<T, E>> : std::true_type {};

template <class M>
constexpr bool aggregate_model();

/// What a member of a model is. The last two are errors (a struct that is not a model is
/// unsupported here, and check_member names its first bad member).
enum class member_kind { parameter, buffer, submodel, unregistered_tensor, unsupported };

template <class X>
constexpr member_kind member_kind_of() {
  using T = std::remove_cvref_t<X>;
  if constexpr (parameter_type<T>) {
    return member_kind::parameter;
  } else if constexpr (buffer_type<T>) {
    return member_kind::buffer;
  } else if constexpr (declares_members<T>) {
    return member_kind::submodel;
  } else if constexpr (is_dp_tensor<T>::value) {
    return member_kind::unregistered_tensor;
  } else if constexpr (std::is_aggregate_v<T> && std::is_class_v<T>) {
    return aggregate_model<T>() ? member_kind::submodel : member_kind::unsupported;
  } else {
    return member_kind::unsupported;
  }
}

template <class X>
constexpr bool valid_member() {
  constexpr member_kind k = member_kind_of<X>();
  return k != member_kind::unregistered_tensor && k != member_kind::unsupported;
}

template <class M, std::size_t... I>
constexpr bool all_members_ok(std::index_sequence<I...>) {
  using tied = decltype(reflect::tie_fields<sizeof...(I)>(std::declval<M&>()));
  return (valid_member<std::tuple_element_t<I, tied>>() && ...);
}

template <class M>
constexpr bool aggregate_model() {
  if constexpr (!std::is_aggregate_v<M> || !std::is_class_v<M>) {
    return false;
  } else {
    constexpr std::size_t n = reflect::field_count<M>();
    if constexpr (n == 0 || n > reflect::max_fields) {
      return false;
    } else {
      return all_members_ok<M>(std::make_index_sequence<n>{});
    }
  }
}

template <std::size_t N>
struct fixed_name {
  char s[N + 1]{};
  constexpr fixed_name(std::string_view v) {  // NOLINT(google-explicit-constructor)
    for (std::size_t i = 0; i < N; ++i) {
      s[i] = v[i];
    }
  }
};

template <class>
inline constexpr bool always_false = false;

// The index and name of the offending member appear in these types' template arguments, which the
// compiler prints above the message.
template <class Model, std::size_t Index, fixed_name Name>
struct unregistered_tensor_member {
  static_assert(always_false<Model>,
                "dp: a member of this model is a dp::tensor that is neither nn::parameter nor nn::buffer; wrap it "
                "so it is trained/synchronised, or move it out of the model (model, member index and name are the "
                "template arguments above)");
};
template <class Model, std::size_t Index, fixed_name Name>
struct unsupported_member {
  static_assert(always_false<Model>,
                "dp: a member of this model is not a module, an nn::parameter or an nn::buffer, so dp could not keep "
                "it identical across replicas; make it a template argument or a static constexpr, store it in an "
                "nn::buffer, or move it out of the model (model, member index and name are the template arguments "
                "above)");
};

template <class M, std::size_t I>
constexpr void check_member();

/// Reports what makes M not a model, each mistake by a dp: static_assert of its own that names the
/// member. Returns true either way, so that a class checks its model with
/// static_assert(check_model<M>()) and adds no second error to the one that says what to fix.
template <class M>
constexpr bool check_model() {
  if constexpr (declares_members<M>) {
    // a library module: its members are its own
  } else if constexpr (!std::is_aggregate_v<M> || !std::is_class_v<M>) {
    static_assert(always_false<M>,
                  "dp: a model is a library module or an aggregate struct whose members are modules, nn::parameter "
                  "or nn::buffer (no constructors, no private members)");
  } else if constexpr (reflect::too_many_fields<M>) {
    static_assert(always_false<M>, "dp: a model aggregate has more than 32 members; group some into a nested struct");
  } else {
    constexpr std::size_t n = reflect::field_count<M>();
    static_assert(n > 0,
                  "dp: a model aggregate needs at least one member: give it a module, an nn::parameter or an "
                  "nn::buffer");
    [&]<std::size_t... I>(std::index_sequence<I...>) { (check_member<M, I>(), ...); }(std::make_index_sequence<n>{});
  }
  return true;
}

template <class M, std::size_t I>
constexpr void check_member() {
  constexpr std::size_t n = reflect::field_count<M>();
  using tied = decltype(reflect::tie_fields<n>(std::declval<M&>()));
  using X = std::remove_cvref_t<std::tuple_element_t<I, tied>>;
  constexpr member_kind kind = member_kind_of<X>();
  constexpr std::string_view name = reflect::field_name_v<M, I>;
  if constexpr (kind == member_kind::unregistered_tensor) {
    (void)sizeof(unregistered_tensor_member<M, I, fixed_name<name.size()>(name)>);
  } else if constexpr (kind == member_kind::unsupported && !(std::is_aggregate_v<X> && std::is_class_v<X>)) {
    (void)sizeof(unsupported_member<M, I, fixed_name<name.size()>(name)>);
  } else if constexpr (kind == member_kind::unsupported || kind == member_kind::submodel) {
    (void)check_model<X>();
  }
}

/// Calls f(name, member) for each direct member of a model.
template <class M, class F>
void for_each_member(M& m, F&& f) {
  using Mc = std::remove_const_t<M>;
  if constexpr (declares_members<Mc>) {
    Mc::dp_members(m, f);
  } else {
    constexpr std::size_t n = reflect::field_count<Mc>();
    auto fields = reflect::tie_fields<n>(m);
    [&]<std::size_t... I>(std::index_sequence<I...>) {
      (f(reflect::field_name_v<Mc, I>, std::get<I>(fields)), ...);
    }(std::make_index_sequence<n>{});
  }
}

inline std::string join_name(std::string_view prefix, std::string_view name) {
  if (prefix.empty()) {
    return std::string(name);
  }
  std::string s(prefix);
  s += '.';
  s += name;
  return s;
}

/// Visits every parameter (kind 1) and/or buffer (kind 2) in declaration order with dotted names.
template <class M, class F>
void visit_tensors(M& m, std::string_view prefix, F& f) {
  for_each_member(m, [&](std::string_view name, auto& member) {
    using X = std::remove_cvref_t<decltype(member)>;
    if constexpr (parameter_type<X> || buffer_type<X>) {
      f(join_name(prefix, name), member);
    } else {
      visit_tensors(member, join_name(prefix, name), f);
    }
  });
}

template <class X>
concept seeded = requires(X& x) {
  { x.seed } -> std::same_as<std::uint64_t&>;
};

/// Calls f(name, module) for the model and every module nested in it, outermost first.
template <class M, class F>
void visit_modules(M& m, std::string_view prefix, F& f) {
  f(std::string(prefix), m);
  for_each_member(m, [&](std::string_view name, auto& member) {
    using X = std::remove_cvref_t<decltype(member)>;
    if constexpr (!parameter_type<X> && !buffer_type<X>) {
      visit_modules(member, join_name(prefix, name), f);
    }
  });
}

}  // namespace detail

/// Calls f(name, seed) for every module that draws random numbers (a `std::uint64_t seed` member,
/// as dropout has): the state beyond parameters and buffers that a checkpoint must keep.
template <class M, class F>
void for_each_seed(M&& model, F&& f) {
  auto g = [&](const std::string& name, auto& module) {
    if constexpr (detail::seeded<std::remove_cvref_t<decltype(module)>>) {
      f(name, module.seed);
    }
  };
  detail::visit_modules(model, "", g);
}

/// Calls f(name, value&) for every module setting (dropout's p and seed, a norm's eps and momentum,
/// flatten's dimensions) in declaration order: the plain values besides tensors that a trained
/// model's steps read, so every replica must hold the same.
template <class M, class F>
void for_each_setting(M&& model, F&& f) {
  auto g = [&](const std::string& name, auto& module) {
    using X = std::remove_cvref_t<decltype(module)>;
    if constexpr (detail::declares_settings<X>) {
      X::dp_settings(module, [&](std::string_view setting, auto& v) {
        using V = std::remove_cvref_t<decltype(v)>;
        static_assert(std::is_arithmetic_v<V> && sizeof(V) <= 8,
                      "dp: dp_settings names a module's plain values (a number or a bool of at most 64 bits); "
                      "keep tensors in dp_members");
        f(detail::join_name(name, setting), v);
      });
    }
  };
  detail::visit_modules(model, "", g);
}

namespace detail {
/// A library module's numbers and flags are what its forward reads besides tensors, so they must be
/// settings: one that dp_settings leaves out is read once when a step is traced (an edit changing it
/// goes unseen) and stays each replica's own (dp::parallel gives every replica and rank replica 0's
/// settings, and nothing else). For each library module that is an aggregate (its members can be
/// listed), returns the first non-const number, flag or enum that neither dp_members nor dp_settings
/// names, as "path.member (type)"; "" when there is none.
template <class M>
std::string unlisted_value(M& model) {
  std::string found;
  auto g = [&](const std::string& path, auto& module) {
    using X = std::remove_cvref_t<decltype(module)>;
    if constexpr (declares_members<X> && std::is_aggregate_v<X> &&
                  !std::is_const_v<std::remove_reference_t<decltype(module)>>) {
      constexpr std::size_t n = reflect::field_count<X>();
      if constexpr (n > 0) {
        std::vector<const void*> listed;
        X::dp_members(module, [&](std::string_view, auto& v) { listed.push_back(&v); });
        if constexpr (declares_settings<X>) {
          X::dp_settings(module, [&](std::string_view, auto& v) { listed.push_back(&v); });
        }
        auto fields = reflect::tie_fields<n>(module);
        [&]<std::size_t... I>(std::index_sequence<I...>) {
          const auto look = [&]<std::size_t J>(std::integral_constant<std::size_t, J>) {
            using V = std::remove_reference_t<std::tuple_element_t<J, decltype(fields)>>;
            if constexpr (!std::is_const_v<V> && (std::is_arithmetic_v<V> || std::is_enum_v<V>)) {
              const void* at = &std::get<J>(fields);
              if (found.empty() && std::find(listed.begin(), listed.end(), at) == listed.end()) {
#if defined(__clang__) && __clang_major__ <= 14  // cannot take field_name_v's member pointers (the fuzz builds)
                const std::string name = "member " + std::to_string(J);
#else
                const std::string name(reflect::field_name_v<X, J>);
#endif
                found = join_name(path, name) + " (" + reflect::type_name<V>() + ")";
              }
            }
          };
          (look(std::integral_constant<std::size_t, I>{}), ...);
        }(std::make_index_sequence<n>{});
      }
    }
  };
  visit_modules(model, "", g);
  return found;
}
}  // namespace detail

/// True for library modules and for aggregates whose members are all modules, parameters or buffers.
template <class M>
concept module = detail::declares_members<std::remove_cvref_t<M>> || detail::aggregate_model<std::remove_cvref_t<M>>();

/// Checks a model's structure at compile time, with a message naming the offending member.
template <class M>
constexpr void check_model() {
  static_assert(detail::check_model<std::remove_cvref_t<M>>());
}

/// Calls f(name, parameter&) for every parameter, in declaration order, with PyTorch's dotted names.
template <class M, class F>
void for_each_parameter(M&& model, F&& f) {
  auto g = [&](const std::string& name, auto& member) {
    if constexpr (parameter_type<decltype(member)>) {
      f(name, member);
    }
  };
  detail::visit_tensors(model, "", g);
}

/// Calls f(name, buffer&) for every buffer, in declaration order.
template <class M, class F>
void for_each_buffer(M&& model, F&& f) {
  auto g = [&](const std::string& name, auto& member) {
    if constexpr (buffer_type<decltype(member)>) {
      f(name, member);
    }
  };
  detail::visit_tensors(model, "", g);
}

/// Calls f(name, member) for every parameter and buffer, in declaration order (a state dict's order).
template <class M, class F>
void for_each_tensor(M&& model, F&& f) {
  detail::visit_tensors(model, "", f);
}

/// The dotted names of all parameters, in declaration order.
template <class M>
std::vector<std::string> parameter_names(const M& model) {
  std::vector<std::string> out;
  for_each_parameter(model, [&](const std::string& name, const auto&) { out.push_back(name); });
  return out;
}

/// Number of trainable values.
template <class M>
index_t parameter_count(const M& model) {
  index_t n = 0;
  for_each_parameter(model, [&](const std::string&, const auto& p) { n += p.numel(); });
  return n;
}

}  // namespace dp::inline DP_ABI::nn

namespace dp::inline DP_ABI::detail {

/// io's door to a model (core/model_state.hpp): every module's tensors, seeds and settings, by nn's visitors.
template <class M>
  requires nn::module<M>
struct model_state<M> {
  template <class X, class F>
  static void for_each_tensor(X& m, F&& f) {
    nn::for_each_tensor(m, f);
  }
  template <class X, class F>
  static void for_each_seed(X& m, F&& f) {
    nn::for_each_seed(m, f);
  }
  template <class X, class F>
  static void for_each_setting(X& m, F&& f) {
    nn::for_each_setting(m, f);
  }
};

}  // namespace dp::inline DP_ABI::detail
