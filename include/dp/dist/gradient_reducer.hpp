// Gradient reduction for dp::parallel: the flat gradient buffer summed over every replica, bucket
// by bucket. Overlapped (one replica per rank), backward's hook announces each bucket as soon as
// the traced plan has written its last gradient, its all-reduce starts at once, the buckets in
// flight are polled between backward's ops, and the step waits for them at the end. The bucket
// layout and the order of collectives come from the parameter layout and the plan, the same on
// every rank by construction. Otherwise each replica reduces its buckets after backward.
#pragma once

#include <utility>
#include <vector>

#include <dp/core/error.hpp>
#include <dp/core/tensor.hpp>
#include <dp/dist/any_communicator.hpp>
#include <dp/dist/bucket.hpp>
#include <dp/nn/trainer.hpp>

namespace dp::inline DP_ABI::dist::detail {

template <class T>
class gradient_reducer {
 public:
  gradient_reducer(const std::vector<nn::param_entry>& layout, index_t total, std::size_t bytes,
                   std::size_t first_bytes)
      : buckets_(make_buckets(layout, total, sizeof(T), bytes, first_bytes)), in_flight_(buckets_.size()) {
    for (const auto& b : buckets_) {
      ranges_.emplace_back(b.begin, b.end);
    }
    hook_ = {ranges_, this, [](void* self, int b) { static_cast<gradient_reducer*>(self)->start(b); },
             [](void* self) { static_cast<gradient_reducer*>(self)->poll(); }};
  }
  gradient_reducer(const gradient_reducer&) = delete;
  gradient_reducer& operator=(const gradient_reducer&) = delete;

  int bucket_count() const noexcept { return static_cast<int>(buckets_.size()); }

  /// Overlapped reduction of `grads` over `comm`; backward calls hook() as buckets become final.
  void overlap(tensor<T> grads, any_communicator* comm) {
    grads_ = std::move(grads);
    comm_ = comm;
  }
  const nn::detail::grad_ready_hook* hook() const noexcept { return &hook_; }

  /// Starts bucket b's all-reduce (backward announces them in bucket order).
  void start(int b) {
    const auto& bk = buckets_[static_cast<std::size_t>(b)];
    tensor<T> part = grads_.slice(0, bk.begin, bk.end);
    noting_failure([&] { in_flight_[static_cast<std::size_t>(b)] = comm_->start_all_reduce(part, reduce_op::sum); });
    ++started_;
  }
  /// Starts every bucket at once (a replica without samples: all its gradients are final zeros).
  void start_all() {
    for (int b = started_; b < bucket_count(); ++b) {
      start(b);
    }
  }
  /// Lets the buckets in flight progress (MPI moves data inside its calls).
  void poll() {
    noting_failure([&] {
      while (finished_ < started_ && comm_->test(in_flight_[static_cast<std::size_t>(finished_)])) {
        ++finished_;
      }
    });
  }
  /// Waits for every bucket of the step.
  void finish() {
    wait_started();  // before any error: a reduction left running would write into grads_ later
    const int started = started_;
    started_ = finished_ = waited_ = 0;
    DP_CHECK(started == bucket_count(), runtime_error, "dp: parallel: backward announced ", started, " of ",
             bucket_count(), " gradient buckets");
  }

  /// Forgets a step that failed part-way, once the reductions it started are done (the other ranks
  /// start the same buckets; a rank that does not is the communicator's timeout).
  void reset() noexcept {
    if (!failed_) {  // after a failed wait the communicator is broken: each further wait would take a timeout
      try {
        wait_started();
      } catch (...) {  // the step's own error is the one to report
      }
    }
    started_ = finished_ = waited_ = 0;
    failed_ = false;
  }

  /// Sums `grads` over `comm` bucket by bucket, now (each replica calls it on its thread).
  void reduce(any_communicator& comm, const tensor<T>& grads) const {
    for (const auto& b : buckets_) {
      tensor<T> part = grads.slice(0, b.begin, b.end);
      comm.all_reduce(part, reduce_op::sum);
    }
  }

 private:
  /// Waits for the started buckets not waited for yet, in order, stopping at a failure.
  void wait_started() {
    for (; waited_ < started_; ++waited_) {
      noting_failure([&] { comm_->wait(in_flight_[static_cast<std::size_t>(waited_)]); });
    }
  }
  /// Runs f, a call into the communicator; if it fails, the communicator is broken for this step.
  template <class F>
  void noting_failure(F&& f) {
    try {
      f();
    } catch (...) {
      failed_ = true;
      throw;
    }
  }

  std::vector<bucket> buckets_;
  std::vector<std::pair<index_t, index_t>> ranges_;
  std::vector<any_communicator::request> in_flight_;
  nn::detail::grad_ready_hook hook_;
  tensor<T> grads_;
  any_communicator* comm_ = nullptr;
  int started_ = 0, finished_ = 0;  // buckets of the current step started, and found done
  int waited_ = 0;                  // buckets waited for
  bool failed_ = false;             // a wait failed this step
};

}  // namespace dp::inline DP_ABI::dist::detail
