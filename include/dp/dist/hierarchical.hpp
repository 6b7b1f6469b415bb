// The hierarchical communicator: ranks x local replicas. A collective runs first among the replicas
// of one process (a local group), then across processes between the local leaders (replica 0 of
// each process, the only one that holds the cross-process communicator), and the result is handed
// back to the local replicas. Replica r of process p is global rank p * local_size + r.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <utility>

#include <dp/core/error.hpp>
#include <dp/core/tensor.hpp>
#include <dp/dist/communicator.hpp>
#include <dp/dist/local.hpp>
#include <dp/exec/factory.hpp>

namespace dp::inline DP_ABI::dist {

template <communicator Global>
class hierarchical_communicator {
  using Local = local_communicator;

 public:
  /// `global` is given to local rank 0 only; `process` and `processes` place this process.
  hierarchical_communicator(Local local, std::optional<Global> global, int process, int processes)
      : local_(std::move(local)), global_(std::move(global)), process_(process), processes_(processes) {
    // On every replica, not only the leader: rank() and the blocks reduce_scatter hands out follow from them.
    DP_CHECK(processes_ >= 1 && process_ >= 0 && process_ < processes_, value_error,
             "dp: hierarchical communicator: process ", process_, " of ", processes_,
             "; expected a process count of 1 or more and a process in [0, count)");
    DP_CHECK(global_.has_value() == (local_.rank() == 0), value_error,
             "dp: hierarchical communicator: exactly local rank 0 holds the cross-process communicator");
    // Every collective's blocks are laid out by process: the leaders' communicator must number them so.
    DP_CHECK(!global_ || (global_->size() == processes_ && global_->rank() == process_), value_error,
             "dp: hierarchical communicator: process ", process_, " of ", processes_,
             " was given a cross-process communicator of rank ", global_ ? global_->rank() : -1, " of ",
             global_ ? global_->size() : -1, "; pass the process's rank and the process count");
  }

  int rank() const noexcept { return process_ * local_.size() + local_.rank(); }
  int size() const noexcept { return processes_ * local_.size(); }
  std::string name() const {
    return dp::detail::concat(processes_, " processes x ", local_.size(), " local replicas (", local_.name(),
                              global_ ? ", " + global_->name() : std::string(), ")");
  }

  void barrier() {
    local_.barrier();
    if (global_) {
      global_->barrier();
    }
    local_.barrier();
  }

  template <class T>
  void all_reduce(tensor<T>& t, reduce_op op) {
    const reduce_op partial = op == reduce_op::mean ? reduce_op::sum : op;
    local_.all_reduce(t, partial);
    if (global_) {
      global_->all_reduce(t, partial);
    }
    local_.broadcast(t, 0);
    if (op == reduce_op::mean) {
      detail::mean_from_sum(t, size());
    }
  }

  template <class T>
  void broadcast(tensor<T>& t, int root) {
    detail::check_broadcast(call_of("broadcast"), t, root);
    const int root_process = root / local_.size(), root_local = root % local_.size();
    local_.broadcast(t, root_local);  // on the root's process the leader now holds the root's values
    if (global_) {
      global_->broadcast(t, root_process);
    }
    local_.broadcast(t, 0);
  }

  template <class T>
  void all_gather(const tensor<T>& in, tensor<T>& out) {
    detail::check_all_gather(call_of("all_gather"), in, out);
    tensor<T> mine = empty<T>({in.numel() * local_.size()}, in.device());
    local_.all_gather(in, mine);
    if (global_) {
      global_->all_gather(mine, out);
    }
    local_.broadcast(out, 0);
  }

  template <class T>
  void reduce_scatter(const tensor<T>& in, tensor<T>& out, reduce_op op) {
    detail::check_reduce_scatter(call_of("reduce_scatter"), in, out);
    tensor<T> all = in.clone().reshape({in.numel()});  // blocks are runs of elements, whatever the shapes
    all_reduce(all, op);
    out.assign(all.slice(0, out.numel() * rank(), out.numel() * (rank() + 1)).reshape(out.shape()));
  }

  /// The local inputs gathered in the process, one all-to-all between the leaders (process q gets
  /// every local input's blocks for q's replicas: the bytes of a direct exchange), and the received
  /// blocks handed to the local replicas.
  template <class T>
  void all_to_all(const tensor<T>& in, tensor<T>& out) {
    const index_t n = size(), l = local_.size();
    detail::check_all_to_all(call_of("all_to_all"), in, out);
    if (processes_ == 1) {
      local_.all_to_all(in, out);
      return;
    }
    const index_t c = in.numel() / n;
    tensor<T> flat_out = out.view({out.numel()});         // blocks are runs of elements, whatever the shapes
    tensor<T> mine = empty<T>({l * n * c}, in.device());  // [local source][global destination][c]
    local_.all_gather(in, mine);
    tensor<T> got = empty<T>({n * l * c}, in.device());  // [process][local source][local destination][c]
    if (global_) {
      tensor<T> send = empty<T>({n * l * c}, in.device());  // [process][local source][local destination][c]
      for (index_t q = 0; q < processes_; ++q) {
        for (index_t src = 0; src < l; ++src) {
          const index_t at = (q * l + src) * l * c;
          send.slice(0, at, at + l * c).assign(mine.slice(0, (src * n + q * l) * c, (src * n + q * l + l) * c));
        }
      }
      global_->all_to_all(send, got);
    }
    local_.broadcast(got, 0);
    const index_t me = local_.rank();
    for (index_t p = 0; p < processes_; ++p) {
      for (index_t src = 0; src < l; ++src) {
        const index_t from = ((p * l + src) * l + me) * c, to = (p * l + src) * c;
        flat_out.slice(0, to, to + c).assign(got.slice(0, from, from + c));
      }
    }
  }

  /// The local part runs at start (a rendezvous of threads); the cross-process part is in flight
  /// until wait, which then hands the result to the local replicas.
  struct request {
    typename Global::request global{};
    void* data = nullptr;
    std::size_t bytes = 0;
    bool leader = false;
  };
  template <class T>
  request start_all_reduce(tensor<T>& t, reduce_op op) {
    detail::check_start_all_reduce(call_of("all_reduce"), t, op);
    local_.all_reduce(t, op);
    request q{{}, t.data(), static_cast<std::size_t>(t.numel()) * sizeof(T), global_.has_value()};
    if (global_) {
      q.global = global_->start_all_reduce(t, op);
    }
    return q;
  }
  /// Whether the cross-process part is done (the hand-back to local replicas happens in wait).
  bool test(request& q) { return q.leader ? global_->test(q.global) : true; }
  void wait(request& q) {
    if (q.leader) {
      global_->wait(q.global);
    }
    local_.broadcast_bytes(q.data, q.bytes, 0);
  }

  /// Fails the local group (its replicas stop waiting) and marks the cross-process world failed.
  void abort(const std::string& why) {
    local_.abort(why);
    if (global_) {
      global_->abort(why);
    }
  }
  /// Clears a local failure for the next step (a cross-process failure cannot be recovered).
  void recover() { local_.recover(); }

 private:
  /// Its local and global parts check where the tensors are; this checks the sizes across all ranks.
  detail::call call_of(const char* what) const { return {what, size(), "hierarchical", std::nullopt}; }
  Local local_;
  std::optional<Global> global_;
  int process_, processes_;
};

}  // namespace dp::inline DP_ABI::dist
