// Buffer synchronisation for dp::parallel: after a training forward every replica's buffers agree
// again, by each buffer's declared policy. Mean buffers (running statistics) become the mean over
// replicas weighted by each one's share of the batch (a replica without samples did not update
// its own and weighs nothing); the others (counters, int64 buffers) take replica 0's value.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <type_traits>
#include <variant>
#include <vector>

#include <dp/core/element_types.hpp>
#include <dp/core/tensor.hpp>
#include <dp/core/write_guard.hpp>
#include <dp/dist/any_communicator.hpp>
#include <dp/dist/local.hpp>
#include <dp/exec/factory.hpp>
#include <dp/exec/fp_env.hpp>
#include <dp/nn/buffer_snapshot.hpp>
#include <dp/nn/module.hpp>

namespace dp::inline DP_ABI::dist::detail {

/// One replica's buffers, found once (their storage never moves), with their policies.
class replica_buffers {
 public:
  template <class Model>
  explicit replica_buffers(Model& model) : snapshot_(model) {
    nn::for_each_buffer(model, [&](const std::string&, auto& b) {
      using V = typename std::remove_cvref_t<decltype(b)>::value_type;
      refs_.push_back(ref{tensor<V>(b.value()), std::is_integral_v<V> ? nn::buffer_sync::first : b.sync()});
    });
  }

  /// Whether any buffer is a mean over the batch (running statistics), which depends on how the
  /// batch is split.
  bool has_mean() const noexcept {
    for (const auto& r : refs_) {
      if (r.sync == nn::buffer_sync::mean) {
        return true;
      }
    }
    return false;
  }

  /// Synchronises them; `weight` is this replica's share of the (global) batch.
  void sync(any_communicator& comm, double weight) {
    const dp::detail::owner_write_scope owner;  // dp::parallel writes its replicas' buffers
    for (auto& r : refs_) {
      std::visit(
          [&](auto& t) {
            using V = typename std::remove_cvref_t<decltype(t)>::value_type;
            if (r.sync == nn::buffer_sync::mean) {
              t *= static_cast<V>(weight);
              comm.all_reduce(t, reduce_op::sum);
            } else {
              comm.broadcast(t, 0);
            }
          },
          r.t);
    }
  }
  /// sync() for host replicas of one process, done by one thread over their memory directly:
  /// replica r's weight is `weights[r]`; the same operations in the same order, so the same bits.
  static void sync_replicas(std::vector<replica_buffers>& all, const std::vector<double>& weights) {
    const dp::detail::host_fp_scope fp;  // flushed as sync() is inside the replicas' jobs
    const dp::detail::owner_write_scope owner;
    const int n = static_cast<int>(all.size());
    for (std::size_t b = 0; b < all[0].refs_.size(); ++b) {
      std::visit(
          [&](auto& t0) {
            using X = std::remove_cvref_t<decltype(t0)>;
            using V = typename X::value_type;
            auto at = [&](int r) { return std::get<X>(all[static_cast<std::size_t>(r)].refs_[b].t).data(); };
            if (all[0].refs_[b].sync == nn::buffer_sync::mean) {
              for (int r = 0; r < n; ++r) {
                std::get<X>(all[static_cast<std::size_t>(r)].refs_[b].t) *=
                    static_cast<V>(weights[static_cast<std::size_t>(r)]);
              }
              combine_into_all(at, n, 0, t0.numel(), reduce_op::sum);
            } else {
              for (int r = 1; r < n; ++r) {
                std::memcpy(at(r), t0.data(), static_cast<std::size_t>(t0.numel()) * sizeof(V));
              }
            }
          },
          all[0].refs_[b].t);
    }
  }

  /// Every buffer takes rank `root`'s values.
  void broadcast(any_communicator& comm, int root) {
    for (auto& r : refs_) {
      std::visit([&](auto& t) { comm.broadcast(t, root); }, r.t);
    }
  }

  // For the deterministic mode, where every chunk of the batch starts from the step's buffers.
  /// Keeps every buffer's values (the copies are made once).
  void save() { snapshot_.save(); }
  /// Puts the saved values back.
  void restore() { snapshot_.restore(); }
  /// Calls f(tensor) for every buffer with the mean policy, in declaration order.
  template <class F>
  void for_each_mean(F&& f) {
    for (auto& r : refs_) {
      if (r.sync == nn::buffer_sync::mean) {
        std::visit(f, r.t);
      }
    }
  }
  /// The mean buffers take consecutive `values`, in declaration order.
  void set_means(const double* values) {
    const dp::detail::owner_write_scope owner;
    for_each_mean([&](auto& t) {
      using V = typename std::remove_cvref_t<decltype(t)>::value_type;
      tensor<V> host = t.device().is_cpu() ? t : empty<V>(t.shape());
      V* p = host.data();  // buffers are whole, contiguous tensors
      for (index_t e = 0; e < t.numel(); ++e) {
        p[e] = static_cast<V>(values[e]);
      }
      values += t.numel();
      if (!t.device().is_cpu()) {
        t.assign(host.to(t.device()));
      }
    });
  }
  /// The other buffers take `from`'s values (another replica's buffers of the same model).
  void take_others(const replica_buffers& from) {
    const dp::detail::owner_write_scope owner;
    for (std::size_t i = 0; i < refs_.size(); ++i) {
      if (refs_[i].sync != nn::buffer_sync::mean) {
        std::visit(
            [&](auto& t) {
              using X = std::remove_cvref_t<decltype(t)>;
              const X& src = std::get<X>(from.refs_[i].t);
              if (t.device().is_cpu() && src.device().is_cpu()) {  // host workers: no copy made
                std::memcpy(t.data(), src.data(), static_cast<std::size_t>(t.numel()) * sizeof(typename X::value_type));
              } else {
                t.assign(src.to(t.device()));
              }
            },
            refs_[i].t);
      }
    }
  }
  /// The other buffers take rank `root`'s values over `comm`, the ranks' (MPI) communicator: a
  /// GPU's buffer goes through a host copy.
  void broadcast_others(any_communicator& comm, int root) {
    const dp::detail::owner_write_scope owner;
    for (auto& r : refs_) {
      if (r.sync != nn::buffer_sync::mean) {
        std::visit(
            [&](auto& t) {
              if (t.device().is_cpu()) {
                comm.broadcast(t, root);
                return;
              }
              auto host = t.to(cpu());
              comm.broadcast(host, root);
              t.assign(host.to(t.device()));
            },
            r.t);
      }
    }
  }

 private:
  using any_tensor = dp::detail::any_model_tensor;
  struct ref {
    any_tensor t;
    nn::buffer_sync sync;
  };
  std::vector<ref> refs_;
  nn::detail::buffer_snapshot snapshot_;
};

/// Keeps every replica's buffers while a training forward runs and puts them back unless released:
/// a forward that fails on one replica leaves none changed (nor the canonical model).
class buffers_kept {
 public:
  buffers_kept(std::vector<replica_buffers>& all, bool keep) : all_(keep ? &all : nullptr) {
    if (all_ != nullptr) {
      for (auto& b : *all_) {
        b.save();
      }
    }
  }
  buffers_kept(const buffers_kept&) = delete;
  buffers_kept& operator=(const buffers_kept&) = delete;
  ~buffers_kept() {
    if (all_ == nullptr) {
      return;
    }
    try {
      for (auto& b : *all_) {
        b.restore();
      }
    } catch (...) {  // the error in flight is the one to report
    }
  }
  void release() noexcept { all_ = nullptr; }

 private:
  std::vector<replica_buffers>* all_;
};

}  // namespace dp::inline DP_ABI::dist::detail
