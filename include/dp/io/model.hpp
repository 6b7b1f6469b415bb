// Saving and loading a model's parameters and buffers as safetensors, by PyTorch's names. A
// trainer or a dp::parallel is saved as its canonical model (so saving `par` and `par.model()` give
// the same bytes) and loaded into every replica. Loading is strict and all-or-nothing: a file for
// another model, with a wrong dtype or shape, or corrupt, is an io_error listing the missing, extra
// and mis-shaped names, and the model is left untouched.
#pragma once

#include <algorithm>
#include <cstdint>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include <dp/core/element_types.hpp>
#include <dp/core/model_state.hpp>
#include <dp/core/replica_access.hpp>
#include <dp/io/safetensors.hpp>

namespace dp::inline DP_ABI::io {

namespace detail {

template <class X>
concept owner = requires(X& x) { x.model(); };

template <class X>
const auto& model_of(const X& x) {
  if constexpr (owner<const X>) {
    return x.model();
  } else {
    return x;
  }
}

/// Refuses a trainer that was moved into a dp::parallel: the parallel trains the model now, so the
/// trainer's copy is stale (saving it) or trains nothing (loading into it).
template <class X>
void require_active(const X& x, const char* what, const std::string& path) {
  if constexpr (requires { x.retired(); }) {
    DP_CHECK(!x.retired(), value_error, "dp: ", what, "(", path,
             ") of a trainer that was moved into a dp::parallel: the parallel trains the model now, so pass the "
             "parallel (",
             what, "(path, par))");
  }
}

/// A model's tensors and seeds, reached through the protocol nn implements (io does not include nn).
template <class M>
using state = dp::detail::model_state<std::remove_cvref_t<M>>;

template <class M>
std::vector<entry> model_entries(const M& model, const std::string& prefix = "") {
  std::vector<entry> out;
  state<M>::for_each_tensor(model, [&](const std::string& name, const auto& member) {
    out.push_back(make_entry(prefix + name, member.value()));
  });
  return out;
}

/// What the model expects to find, checked against a file; throws listing every difference.
template <class M>
void check_against(const M& model, const header& h, const std::string& source, const std::string& prefix,
                   const std::vector<std::string>& also_expected = {}) {
  std::vector<std::string> missing, wrong, extra;
  std::vector<std::string> expected = also_expected;
  const std::vector<std::size_t> order = name_order(h.tensors);  // lookups by name: n log n, not n^2
  state<M>::for_each_tensor(model, [&](const std::string& name, const auto& member) {
    using V = typename std::remove_cvref_t<decltype(member)>::value_type;
    const std::string full = prefix + name;
    expected.push_back(full);
    const tensor_entry* e = find_in_order(h.tensors, order, full);
    if (!e) {
      missing.push_back(full);
    } else if (e->type != dtype_of<V>() || e->shape != member.shape()) {
      wrong.push_back(dp::detail::concat(full, " (file: ", dtype_name(e->type), " ", e->shape,
                                         ", model: ", dtype_name(dtype_of<V>()), " ", member.shape(), ")"));
    }
  });
  std::sort(expected.begin(), expected.end());
  for (const auto& t : h.tensors) {
    if (!std::binary_search(expected.begin(), expected.end(), t.name)) {
      extra.push_back(t.name);
    }
  }
  if (missing.empty() && wrong.empty() && extra.empty()) {
    return;
  }
  std::string msg = "dp: " + source + " does not fit this model; nothing was loaded.";
  auto list = [&](const char* what, const std::vector<std::string>& v) {
    if (!v.empty()) {
      msg += std::string("\n  ") + what + ":";
      for (const auto& x : v) {
        msg += " " + x + (&x == &v.back() ? "" : ",");
      }
    }
  };
  list("missing", missing);
  list("mis-shaped or wrong dtype", wrong);
  list("extra", extra);
  throw io_error(msg);
}

/// Runs body(ready) for a load into `target`: body reads and checks everything, calls ready() just
/// before its first write, then writes. Across ranks ready() is where every rank learns whether any
/// failed before it (a missing file, a model that does not fit): every rank then throws, none having
/// written, instead of the others writing and waiting for the failed one until the timeout.
/// ready(fingerprint) also requires every rank to have read the same file.
template <class X, class Body>
decltype(auto) agreed_update(X& target, const char* what, Body&& body) {
  if constexpr (owner<X>) {
    bool reached = false;
    auto ready = [&](std::optional<std::uint64_t> file = {}) {
      reached = true;
      dp::detail::replica_access::agree_before_update(target, what, false, file);
    };
    try {
      return body(ready);
    } catch (...) {
      if (!reached) {  // this rank failed first: the others learn it at their ready()
        try {
          dp::detail::replica_access::agree_before_update(target, what, true);
        } catch (...) {  // this rank's own error is the one to report
        }
      }
      throw;
    }
  } else {
    return body([](std::optional<std::uint64_t> = {}) {});
  }
}

/// A model's tensors (every replica's, for a trainer or dp::parallel) read from a file onto each
/// member's device before any member is written: a read or an allocation that fails (a device
/// without room for the copies) leaves the model as it was. commit() writes them into the members'
/// storage, which allocates nothing.
class staged_tensors {
 public:
  struct nothing_more {
    void operator()(const auto&) const {}
  };
  template <class X>
  staged_tensors(const X& target, const reader& r, const std::string& prefix) {
    visit_models(target, [&](const auto& m) {
      state<decltype(m)>::for_each_tensor(m, [&](const std::string& name, const auto& member) {
        using V = typename std::remove_cvref_t<decltype(member)>::value_type;
        staged_.emplace_back(r.read<V>(*r.find(prefix + name)).to(member.device()));
      });
    });
  }
  /// Writes the staged tensors, then calls also(model) on each replica's model (a checkpoint's
  /// seeds and settings): one update, so that across ranks the loaded values are compared once.
  template <class X, class Also = nothing_more>
  void commit(X& target, Also also = {}) {
    std::size_t i = 0;
    auto assign = [&](auto& m) {
      state<decltype(m)>::for_each_tensor(m, [&](const std::string&, auto& member) {
        using V = typename std::remove_cvref_t<decltype(member)>::value_type;
        member.assign(std::get<tensor<V>>(staged_[i++]));
      });
      also(m);
    };
    if constexpr (owner<X>) {
      dp::detail::replica_access::update_model(target, assign);
    } else {
      assign(target);
    }
  }

 private:
  template <class X, class F>
  static void visit_models(const X& target, F&& f) {
    if constexpr (owner<X>) {
      dp::detail::replica_access::visit_models(target, f);
    } else {
      f(target);
    }
  }
  std::vector<dp::detail::any_model_tensor> staged_;
};

}  // namespace detail

/// Writes the parameters and buffers of a model (or of a trainer's or dp::parallel's canonical model).
template <class X>
void save(const std::string& path, const X& model_or_owner) {
  detail::require_active(model_or_owner, "io::save", path);
  write(path, detail::model_entries(detail::model_of(model_or_owner)), {{"format", "pt"}});
}

/// Loads a file written by dp::io::save or by PyTorch (safetensors.torch.save_file of a state_dict).
template <class X>
void load(const std::string& path, X& model_or_owner) {
  detail::require_active(model_or_owner, "io::load", path);
  detail::agreed_update(model_or_owner, "io::load", [&](auto ready) {
    const reader r(path);
    r.verify();
    detail::check_against(detail::model_of(model_or_owner), r.info(), path, "");
    detail::staged_tensors staged(model_or_owner, r, "");
    ready();
    staged.commit(model_or_owner);
  });
}

}  // namespace dp::inline DP_ABI::io
