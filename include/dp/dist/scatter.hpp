// Scatter and gather for dp::parallel: how a call's arguments reach the replicas and how their
// outputs come back. A tensor is split on dimension 0 (replica i gets samples [begin_i, begin_i+1),
// the first n % R replicas one more; empty shards allowed), dp::replicated(v) goes whole to every
// replica; any other type is a compile error naming its position. Outputs are concatenated on
// dimension 0 on the first device; a 0-d output (a loss) is averaged over samples.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include <dp/core/device.hpp>
#include <dp/core/tensor.hpp>
#include <dp/data/loader.hpp>
#include <dp/exec/factory.hpp>
#include <dp/nn/module.hpp>
#include <dp/nn/reflect.hpp>

namespace dp::inline DP_ABI {

/// An argument every replica receives whole (a tensor is copied to each replica's device).
template <class V>
struct replicated_t {
  V value;
};
template <class V>
replicated_t<std::decay_t<V>> replicated(V&& v) {
  return {std::forward<V>(v)};
}

namespace detail {

template <class X>
struct is_replicated : std::false_type {};
template <class V>
struct is_replicated<replicated_t<V>> : std::true_type {};

// The compiler prints these types' template arguments: the argument's position and its type.
template <std::size_t Position, class Argument>
struct no_scatter_rule {
  static_assert(nn::detail::always_false<Argument>,
                "dp: an argument of dp::parallel has no scatter rule (its position and type are the template "
                "arguments above): pass a batched dp::tensor (split on dimension 0) or wrap it in dp::replicated(v) "
                "(the same value on every replica)");
};
template <class Output>
struct no_gather_rule {
  static_assert(nn::detail::always_false<Output>,
                "dp: the model's forward returns a type dp::parallel cannot gather (the template argument above): "
                "return a dp::tensor (concatenated on dimension 0; a 0-d tensor is a loss, averaged over samples), "
                "or a tuple or struct of those");
};

/// Whether the argument at position I has a scatter rule; reports it if not.
template <std::size_t I, class X>
constexpr bool scatterable() {
  using Xr = std::remove_cvref_t<X>;
  if constexpr (tensor_type<Xr> || is_replicated<Xr>::value) {
    return true;
  } else {
    (void)sizeof(no_scatter_rule<I, Xr>);
    return false;
  }
}

/// Whether every argument has a scatter rule; each one without is reported by its position and type.
/// A caller goes no further when it is false (`if constexpr`), so that those messages are the only
/// errors.
template <class... Args>
constexpr bool check_scatter() {
  return []<std::size_t... I>(std::index_sequence<I...>) {
    return (scatterable<I, Args>() & ...);  // & (not &&): every argument is looked at
  }(std::index_sequence_for<Args...>{});
}

template <class A>
const auto& unwrap(const A& a) {
  if constexpr (is_replicated<A>::value) {
    return a.value;
  } else {
    return a;  // a tensor (anything else was rejected by check_scatter)
  }
}

/// The split of one batch over the replicas' devices, and the moves it implies.
class scatter_plan {
 public:
  explicit scatter_plan(std::vector<device> devices)
      : devices_(std::move(devices)), begin_(devices_.size() + 1, index_t{0}) {}

  const std::vector<device>& devices() const noexcept { return devices_; }

  /// The batch size shared by the scattered tensors among `args`.
  template <class... Args>
  static index_t batch_size(const Args&... args) {
    index_t n = -1;
    auto one = [&](const auto& a) {
      using A = std::remove_cvref_t<decltype(a)>;
      if constexpr (tensor_type<A>) {
        DP_CHECK(a.rank() >= 1, shape_error, "dp: parallel: a scattered tensor needs a batch dimension, got shape ",
                 a.shape(), "; wrap it in dp::replicated(...) to give it whole to every replica");
        DP_CHECK(n < 0 || a.shape()[0] == n, shape_error,
                 "dp: parallel: scattered tensors disagree on the batch size (", n, " and ", a.shape()[0], ", shape ",
                 a.shape(), ")");
        n = a.shape()[0];
      }
    };
    (one(args), ...);
    DP_CHECK(n >= 0, value_error, "dp: parallel: at least one argument must be a batched tensor");
    return n;
  }

  /// Splits n samples in whole units of `unit`: replica i gets [begin(i), begin(i + 1)), the first
  /// ones a unit more where they do not divide evenly (data::aligned_part).
  void split(index_t n, index_t unit = 1) {
    const index_t r = static_cast<index_t>(devices_.size());
    for (index_t i = 0; i < r; ++i) {
      const auto [b, e] = data::aligned_part(n, i, r, unit);
      begin_[static_cast<std::size_t>(i)] = b;
      begin_[static_cast<std::size_t>(i + 1)] = e;
    }
  }
  index_t begin(int i) const { return begin_[static_cast<std::size_t>(i)]; }
  index_t count(int i) const { return begin(i + 1) - begin(i); }
  index_t total() const { return begin_.back(); }

  /// An argument given whole to replica 0 (one device): on its device, a copy only when it is on
  /// another kind of device (host memory is every host worker's).
  template <class A>
  auto whole(const A& a) const {
    if constexpr (tensor_type<A>) {
      return to_replica(a, 0);
    } else {
      return shard(0, a);  // dp::replicated
    }
  }
  /// Replica i's part of an argument.
  template <class A>
  auto shard(int i, const A& a) const {
    if constexpr (tensor_type<A>) {
      return to_replica(a.slice(0, begin(i), begin(i + 1)), i);
    } else if constexpr (is_replicated<A>::value) {
      if constexpr (tensor_type<decltype(a.value)>) {
        return to_replica(a.value, i);
      } else {
        return a.value;
      }
    } else {
      return a;  // rejected by check_scatter
    }
  }

  /// Every replica's part of `args`, made on the calling thread before the replicas start: a copy
  /// to a GPU waits for its source device's stream, which must not already hold a collective that
  /// waits for the replica making the copy. Kept in a buffer reused by the next call (a steady step
  /// allocates nothing); the caller clears it after the step to let the parts go.
  template <class... Args>
  auto& scatter(const Args&... args) const {
    using parts = std::tuple<decltype(shard(0, args))...>;
    thread_local std::vector<parts> out;
    out.clear();
    for (int i = 0; i + 1 < static_cast<int>(begin_.size()); ++i) {
      out.emplace_back(shard(i, args)...);
    }
    return out;
  }

  /// The replicas' outputs as the output of the whole batch, on the first device.
  template <class Out>
  Out gather(std::vector<Out>& outs) const {
    if constexpr (tensor_type<Out>) {
      return gather_tensor(outs);
    } else if constexpr (requires { std::tuple_size<Out>::value; }) {
      return [&]<std::size_t... K>(std::index_sequence<K...>) {
        return Out{gather_field<K>(outs)...};
      }(std::make_index_sequence<std::tuple_size_v<Out>>{});
    } else if constexpr (std::is_aggregate_v<Out> && std::is_class_v<Out>) {
      static_assert(!nn::detail::reflect::too_many_fields<Out>,
                    "dp: the model's forward returns a struct of more than 32 members, more than dp::parallel can "
                    "gather: group some into a nested struct");
      constexpr std::size_t n = nn::detail::reflect::field_count<Out>();
      return [&]<std::size_t... K>(std::index_sequence<K...>) {
        return Out{gather_member<K, n>(outs)...};
      }(std::make_index_sequence<n>{});
    } else {
      (void)sizeof(no_gather_rule<Out>);  // the one error: it names the type
      return Out{};
    }
  }

 private:
  template <class V>
  tensor<V> to_replica(const tensor<V>& t, int i) const {
    const device d = devices_[static_cast<std::size_t>(i)];
    if (t.device() == d) {
      return t;
    }
    if (t.device().is_cpu() && d.is_cpu()) {
      return tensor_access::on_host_worker(t, d);  // host workers share memory
    }
    return t.to(d);
  }

  template <std::size_t K, class Out>
  auto gather_field(std::vector<Out>& outs) const {
    return gather_part(outs, [](auto& o) -> auto& { return std::get<K>(o); });
  }
  template <std::size_t K, std::size_t N, class Out>
  auto gather_member(std::vector<Out>& outs) const {
    return gather_part(outs, [](auto& o) -> auto& { return std::get<K>(nn::detail::reflect::tie_fields<N>(o)); });
  }
  template <class Out, class Field>
  auto gather_part(std::vector<Out>& outs, Field field) const {
    using F = std::remove_cvref_t<decltype(field(outs[0]))>;
    std::vector<F> parts;
    parts.reserve(outs.size());
    for (auto& o : outs) {
      parts.push_back(field(o));
    }
    return gather(parts);
  }

  template <class Out>
  Out gather_tensor(std::vector<Out>& outs) const {
    using V = typename Out::value_type;
    int first = -1;
    for (std::size_t i = 0; i < outs.size() && first < 0; ++i) {
      if (count(static_cast<int>(i)) > 0) {
        first = static_cast<int>(i);
      }
    }
    DP_CHECK(first >= 0, value_error, "dp: parallel: an empty batch has no output");
    const Out& proto = outs[static_cast<std::size_t>(first)];
    if (proto.rank() == 0) {  // a per-replica mean (a loss): the mean over all samples
      double acc = 0;
      for (std::size_t i = 0; i < outs.size(); ++i) {
        const index_t c = count(static_cast<int>(i));
        if (c > 0) {
          acc += static_cast<double>(outs[i].item()) * static_cast<double>(c) / static_cast<double>(total());
        }
      }
      return full<V>({}, static_cast<V>(acc), devices_[0]);
    }
    dp::shape s = proto.shape();
    s[0] = total();
    Out out = empty<V>(s, devices_[0]);
    for (std::size_t i = 0; i < outs.size(); ++i) {
      const int r = static_cast<int>(i);
      if (count(r) == 0) {
        continue;
      }
      const tensor<V>& o = outs[i];
      DP_CHECK(o.shape()[0] == count(r), shape_error, "dp: parallel: replica ", i, "'s output has ", o.shape()[0],
               " rows for ", count(r), " samples: outputs must keep the batch on dimension 0 to be gathered");
      tensor<V> src = o.device().is_cpu() && devices_[0].is_cpu() ? tensor_access::on_host_worker(o, devices_[0])
                                                                  : o.to(devices_[0]);
      out.slice(0, begin(r), begin(r + 1)) = src;
    }
    return out;
  }

  std::vector<device> devices_;
  std::vector<index_t> begin_;
};

/// Lets a step's scattered parts go when the step leaves (GPU copies return to their pools).
template <class Parts>
struct scattered_parts_scope {
  Parts& parts;
  ~scattered_parts_scope() { parts.clear(); }
};

/// " of shape S" for the first scattered tensor among `args` (a dp::replicated argument is no batch).
template <class... A>
std::string batch_shape_of(const A&... args) {
  std::string out;
  auto one = [&](const auto& a) {
    if constexpr (tensor_type<std::remove_cvref_t<decltype(a)>>) {
      if (out.empty()) {
        out = concat(" of shape ", a.shape());
      }
    }
  };
  (one(args), ...);
  return out;
}

/// Runs `step` (the last argument) for replica `i` on rows [lo, hi) of the batch `args` (the other
/// arguments). A shape or value error inside it shows the shard's shapes and rows (batch_norm's one
/// row per channel, a class index's row), so it is told which rows of which batch they are.
template <class... A>
double on_shard(int i, index_t lo, index_t hi, const A&... args_then_step) {
  auto all = std::forward_as_tuple(args_then_step...);
  const auto where = [&](const std::exception& e) {
    return concat(e.what(), " (in dp::parallel's replica ", i, ", on rows [", lo, ", ", hi, ") of the batch",
                  batch_shape_of(args_then_step...), ")");
  };
  try {
    return std::get<sizeof...(A) - 1>(all)();
  } catch (const shape_error& e) {
    throw shape_error(where(e));
  } catch (const value_error& e) {
    throw value_error(where(e));
  }
}

}  // namespace detail
}  // namespace dp::inline DP_ABI
