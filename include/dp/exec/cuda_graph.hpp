// CUDA graphs: what host code queues on a device's stream, captured once and replayed as one
// launch. Safe by construction where dp can make it so: the captured work's memory belongs to the
// graph (a private pool), anything that would wait for the device or allocate during capture is a
// dp::device_error saying which, and optimizers advance their step counts on the device, so each
// replay is the next step.
#pragma once

#include <dp/config.hpp>

#if DP_HAS_CUDA
#include <exception>
#include <optional>
#include <utility>

#include <dp/core/cuda_support.hpp>
#include <dp/core/device.hpp>
#include <dp/core/device_status.hpp>
#include <dp/core/memory.hpp>
#include <dp/exec/blas.hpp>

namespace dp::inline DP_ABI {

/// A captured step. Run the work once uncaptured first (tracing and caching its blocks), then:
///
///     dp::cuda_graph step(dp::cuda(0), [&] { trainer.backward_async(loss, x, y); opt.step(); });
///     for (...) { x.assign(next_batch); step.replay(); }
///
/// What stays the caller's: a replay reads and writes the addresses the capture saw (copy each batch
/// into the captured input tensors; the returned loss tensor is rewritten in place); every tensor the
/// work touches (model, optimizer, inputs) must outlive the graph; dropout masks repeat the captured
/// step's, and module settings the captured ones (capture again after an edit or load changes one);
/// nothing else may use the device's stream while capturing.
class cuda_graph {
 public:
  cuda_graph() = default;
  template <class F>
  cuda_graph(dp::device d, F&& work) {
    capture(d, std::forward<F>(work));
  }
  cuda_graph(cuda_graph&& o) noexcept
      : dev_(o.dev_),
        graph_(std::exchange(o.graph_, nullptr)),
        exec_(std::exchange(o.exec_, nullptr)),
        pool_(std::move(o.pool_)) {
    o.pool_.reset();
  }
  cuda_graph& operator=(cuda_graph&& o) noexcept {
    if (this != &o) {
      reset();
      dev_ = o.dev_;
      graph_ = std::exchange(o.graph_, nullptr);
      exec_ = std::exchange(o.exec_, nullptr);
      if (o.pool_) {
        pool_.emplace(std::move(*o.pool_));
      }
      o.pool_.reset();
    }
    return *this;
  }
  ~cuda_graph() { reset(); }

  /// Captures what `work` queues on `d`'s stream (replacing an earlier capture). Throws
  /// dp::device_error if the work waits for the device, needs new memory, or CUDA refuses the capture;
  /// the stream is then left uncaptured and this graph empty.
  template <class F>
  void capture(dp::device d, F&& work) {
    DP_CHECK(d.is_cuda(), device_error, "dp: cuda_graph captures work queued on a CUDA device, got ", d);
    require_usable(d);
    reset();
    detail::cuda_device_guard guard(d.index);
    const cudaStream_t s = detail::cuda_stream(d.index);
    // What dp allocates on a device's first use, CUDA refuses during a capture: the fault status
    // words (pinned host memory) and the cuBLAS handle with its workspace. Made before it begins, so
    // work that did not run uncaptured first captures too; and before the capture's pool opens,
    // which takes no new block (the workspace is 32 MiB of the device's pool).
    (void)detail::device_status_word(d.index);
    (void)detail::cublas_handle(d.index);
    std::optional<detail::capture_pool> pool(std::in_place, d);
    DP_CUDA_CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
    std::exception_ptr failed;
    try {
      std::forward<F>(work)();
    } catch (...) {
      failed = std::current_exception();
    }
    cudaGraph_t graph = nullptr;
    const cudaError_t ended = cudaStreamEndCapture(s, &graph);
    pool->end_capture();
    (void)cudaGetLastError();  // a refused capture's error is not sticky: leave none behind
    if (failed || ended != cudaSuccess) {
      if (graph) {
        (void)cudaGraphDestroy(graph);
      }
      if (failed) {
        std::rethrow_exception(failed);
      }
      detail::raise<device_error>("dp: capturing a CUDA graph on ", d, " failed: ", cudaGetErrorString(ended),
                                  " (the work called something CUDA does not allow during capture, or queued "
                                  "work on another stream without joining it back)");
    }
    cudaGraphExec_t exec = nullptr;
    if (const cudaError_t e = cudaGraphInstantiate(&exec, graph, 0); e != cudaSuccess) {
      (void)cudaGraphDestroy(graph);
      detail::raise<device_error>("dp: instantiating the CUDA graph captured on ", d,
                                  " failed: ", cudaGetErrorString(e));
    }
    dev_ = d;
    graph_ = graph;
    exec_ = exec;
    pool_.emplace(std::move(*pool));
  }

  /// Queues one replay on the device's stream (the host does not wait).
  void replay() {
    DP_CHECK(exec_ != nullptr, runtime_error, "dp: cuda_graph::replay() before a successful capture()");
    detail::cuda_device_guard guard(dev_.index);
    DP_CUDA_CHECK(cudaGraphLaunch(exec_, detail::cuda_stream(dev_.index)));
  }

  bool captured() const noexcept { return exec_ != nullptr; }
  dp::device device() const noexcept { return dev_; }

 private:
  void reset() noexcept {
    if (exec_) {  // replays in flight finish before their blocks can go to other tensors
      (void)cudaStreamSynchronize(detail::cuda_stream(dev_.index));
      (void)cudaGraphExecDestroy(exec_);
      exec_ = nullptr;
    }
    if (graph_) {
      (void)cudaGraphDestroy(graph_);
      graph_ = nullptr;
    }
    pool_.reset();
  }

  dp::device dev_{};
  cudaGraph_t graph_ = nullptr;
  cudaGraphExec_t exec_ = nullptr;
  std::optional<detail::capture_pool> pool_;
};

}  // namespace dp::inline DP_ABI
#endif
