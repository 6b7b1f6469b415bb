// The NCCL communicator: GPUs of one process (ncclCommInitAll, one communicator per device, each
// replica's thread driving its own) or one GPU per process (ncclCommInitRank with a unique id that
// dist::session broadcasts over MPI). Blocking collectives run on dp's stream for the device, so
// they are ordered with the kernels that produce and consume their tensors; a started all-reduce
// runs on the communicator's own stream after the work already queued, so backward's later kernels
// overlap it, and wait() orders dp's stream after it. Waits poll with the timeout and NCCL's
// asynchronous error; abort() aborts every communicator of the process, so no replica stays hung.
// Only with CUDA and NCCL.
#pragma once

#include <dp/config.hpp>

#if DP_HAS_CUDA && DP_HAS_NCCL
#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <nccl.h>

#include <dp/core/cuda_support.hpp>
#include <dp/core/tensor.hpp>
#include <dp/dist/communicator.hpp>
#include <dp/exec/factory.hpp>

#define DP_NCCL_CHECK(expr)                                                                                      \
  do {                                                                                                           \
    const ncclResult_t dp_r_ = (expr);                                                                           \
    if (dp_r_ != ncclSuccess) [[unlikely]] {                                                                     \
      ::dp::detail::raise<::dp::runtime_error>("dp: NCCL call ", #expr, " failed: ", ncclGetErrorString(dp_r_)); \
    }                                                                                                            \
  } while (0)

namespace dp::inline DP_ABI::dist {

namespace detail {
template <class T>
ncclDataType_t nccl_type() {
  if constexpr (std::is_same_v<T, float>) {
    return ncclFloat32;
  } else if constexpr (std::is_same_v<T, double>) {
    return ncclFloat64;
  } else {
    static_assert(std::is_same_v<T, std::int64_t>, "dp: NCCL collectives take float, double or int64 tensors");
    return ncclInt64;
  }
}
inline ncclRedOp_t nccl_op(reduce_op op) {
  switch (op) {
    case reduce_op::max:
      return ncclMax;
    case reduce_op::min:
      return ncclMin;
    case reduce_op::mean:
      return ncclAvg;
    default:
      return ncclSum;
  }
}

/// The NCCL communicators of one process, finalised or aborted together. NCCL's finalize is a
/// collective among the communicators of a clique, so one thread finalises them inside one group
/// (one after another would wait for the next forever).
struct nccl_group {
  std::vector<ncclComm_t> comms;
  std::atomic<bool> aborted{false};
  std::mutex m;
  std::string why;

  nccl_group() = default;
  nccl_group(const nccl_group&) = delete;
  nccl_group& operator=(const nccl_group&) = delete;
  ~nccl_group() {
    if (aborted.load()) {
      return;  // ncclCommAbort freed them
    }
    (void)ncclGroupStart();
    for (auto c : comms) {
      (void)ncclCommFinalize(c);
    }
    (void)ncclGroupEnd();
    for (auto c : comms) {
      (void)ncclCommDestroy(c);
    }
  }
  /// Aborts every communicator (their kernels stop); waiters see `why`. Idempotent.
  void abort(const std::string& w) {
    std::lock_guard lock(m);
    if (aborted.load()) {
      return;
    }
    why = w;
    aborted.store(true);
    for (auto c : comms) {
      (void)ncclCommAbort(c);
    }
  }
};

/// One rank's stream for started collectives and its pool of completion events (reused, so a
/// steady step creates none).
struct nccl_rank_state {
  int device = 0;
  cudaStream_t stream = nullptr;
  cudaEvent_t queued = nullptr;  // marks the work before a started collective on dp's stream
  std::vector<cudaEvent_t> free;
  explicit nccl_rank_state(int d) : device(d) {
    dp::detail::cuda_device_guard g(d);
    DP_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
    DP_CUDA_CHECK(cudaEventCreateWithFlags(&queued, cudaEventDisableTiming));
  }
  nccl_rank_state(const nccl_rank_state&) = delete;
  nccl_rank_state& operator=(const nccl_rank_state&) = delete;
  ~nccl_rank_state() {
    dp::detail::cuda_device_guard g(device);
    for (auto e : free) {
      (void)cudaEventDestroy(e);
    }
    (void)cudaEventDestroy(queued);
    (void)cudaStreamDestroy(stream);
  }
  cudaEvent_t take() {
    if (free.empty()) {
      cudaEvent_t e = nullptr;
      DP_CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
      return e;
    }
    cudaEvent_t e = free.back();
    free.pop_back();
    return e;
  }
};
}  // namespace detail

class nccl_communicator {
 public:
  /// Communicator `index` of `group`, for rank `rank` of `size` on CUDA device `device`.
  nccl_communicator(std::shared_ptr<detail::nccl_group> group, int index, int rank, int size, int device,
                    communicator_options o = {})
      : g_(std::move(group)),
        s_(std::make_shared<detail::nccl_rank_state>(device)),
        index_(index),
        rank_(rank),
        size_(size),
        device_(device),
        opts_(o) {}

  int rank() const noexcept { return rank_; }
  int size() const noexcept { return size_; }
  std::string name() const { return dp::detail::concat("NCCL communicator (", size_, " ranks)"); }

  template <class T>
  void all_reduce(tensor<T>& t, reduce_op op) {
    detail::check_buffer(call_of("all_reduce"), t);
    dp::detail::cuda_device_guard g(enter("all_reduce"));
    DP_NCCL_CHECK(ncclAllReduce(t.data(), t.data(), static_cast<std::size_t>(t.numel()), detail::nccl_type<T>(),
                                detail::nccl_op(op), comm(), stream()));
  }
  template <class T>
  void broadcast(tensor<T>& t, int root) {
    detail::check_broadcast(call_of("broadcast"), t, root);
    dp::detail::cuda_device_guard g(enter("broadcast"));
    DP_NCCL_CHECK(ncclBroadcast(t.data(), t.data(), static_cast<std::size_t>(t.numel()), detail::nccl_type<T>(), root,
                                comm(), stream()));
  }
  template <class T>
  void all_gather(const tensor<T>& in, tensor<T>& out) {
    detail::check_all_gather(call_of("all_gather"), in, out);
    dp::detail::cuda_device_guard g(enter("all_gather"));
    DP_NCCL_CHECK(ncclAllGather(in.data(), out.data(), static_cast<std::size_t>(in.numel()), detail::nccl_type<T>(),
                                comm(), stream()));
  }
  template <class T>
  void reduce_scatter(const tensor<T>& in, tensor<T>& out, reduce_op op) {
    detail::check_reduce_scatter(call_of("reduce_scatter"), in, out);
    dp::detail::cuda_device_guard g(enter("reduce_scatter"));
    DP_NCCL_CHECK(ncclReduceScatter(in.data(), out.data(), static_cast<std::size_t>(out.numel()),
                                    detail::nccl_type<T>(), detail::nccl_op(op), comm(), stream()));
  }
  /// NCCL has no all-to-all collective: one grouped send and receive per peer.
  template <class T>
  void all_to_all(const tensor<T>& in, tensor<T>& out) {
    detail::check_all_to_all(call_of("all_to_all"), in, out);
    dp::detail::cuda_device_guard g(enter("all_to_all"));
    const auto c = static_cast<std::size_t>(in.numel() / size_);
    DP_NCCL_CHECK(ncclGroupStart());
    ncclResult_t rc = ncclSuccess;  // the group is ended even when a call in it fails
    for (int r = 0; r < size_ && rc == ncclSuccess; ++r) {
      rc = ncclSend(in.data() + c * static_cast<std::size_t>(r), c, detail::nccl_type<T>(), r, comm(), stream());
      if (rc == ncclSuccess) {
        rc = ncclRecv(out.data() + c * static_cast<std::size_t>(r), c, detail::nccl_type<T>(), r, comm(), stream());
      }
    }
    const ncclResult_t end = ncclGroupEnd();
    DP_CHECK(rc == ncclSuccess, runtime_error, "dp: all_to_all: ncclSend/ncclRecv failed: ", ncclGetErrorString(rc));
    DP_CHECK(end == ncclSuccess, runtime_error, "dp: all_to_all: ncclGroupEnd failed: ", ncclGetErrorString(end));
  }
  /// An all-reduce of one value, waited for on the host with the timeout.
  void barrier() {
    tensor<float> one = zeros<float>({1}, dp::cuda(device_));
    all_reduce(one, reduce_op::sum);
    dp::detail::cuda_device_guard g(device_);
    cudaEvent_t e = s_->take();
    DP_CUDA_CHECK(cudaEventRecord(e, stream()));
    await(e, "barrier");
  }

  /// A started all-reduce: its completion event (null once waited for).
  struct request {
    cudaEvent_t done = nullptr;
  };
  template <class T>
  request start_all_reduce(tensor<T>& t, reduce_op op) {
    detail::check_start_all_reduce(call_of("all_reduce"), t, op);
    dp::detail::cuda_device_guard g(enter("all_reduce"));
    DP_CUDA_CHECK(cudaEventRecord(s_->queued, stream()));
    DP_CUDA_CHECK(cudaStreamWaitEvent(s_->stream, s_->queued, 0));
    DP_NCCL_CHECK(ncclAllReduce(t.data(), t.data(), static_cast<std::size_t>(t.numel()), detail::nccl_type<T>(),
                                detail::nccl_op(op), comm(), s_->stream));
    request q{s_->take()};
    DP_CUDA_CHECK(cudaEventRecord(q.done, s_->stream));
    return q;
  }
  bool test(request& q) {
    if (q.done == nullptr) {
      return true;
    }
    dp::detail::cuda_device_guard g(device_);
    if (cudaEventQuery(q.done) != cudaSuccess) {
      check_async("all_reduce");
      return false;
    }
    finish(q);
    return true;
  }
  void wait(request& q) {
    if (q.done == nullptr) {
      return;
    }
    dp::detail::cuda_device_guard g(device_);
    await(q.done, "all_reduce", false);
    finish(q);
  }

  /// Aborts every NCCL communicator of this process: collectives in flight stop, and every
  /// replica waiting in one (or starting one) throws `why`.
  void abort(const std::string& why) { g_->abort(why); }
  /// An aborted NCCL communicator cannot be used again.
  void recover() noexcept {}

 private:
  detail::call call_of(const char* what) const { return {what, size_, "NCCL", dp::cuda(device_)}; }
  ncclComm_t comm() const { return g_->comms[static_cast<std::size_t>(index_)]; }
  cudaStream_t stream() const { return dp::detail::cuda_stream(device_); }
  int enter(const char* what) {
    if (g_->aborted.load()) {
      std::lock_guard lock(g_->m);
      throw runtime_error(dp::detail::concat("dp: ", what, " on NCCL rank ", rank_, " aborted: ", g_->why));
    }
    return device_;
  }
  void check_async(const char* what) {
    enter(what);
    ncclResult_t async = ncclSuccess;
    DP_NCCL_CHECK(ncclCommGetAsyncError(comm(), &async));
    if (async != ncclSuccess && async != ncclInProgress) {
      fail(dp::detail::concat("dp: ", what, " failed on NCCL rank ", rank_, ": ", ncclGetErrorString(async)));
    }
  }
  /// Polls `e` until it completes, NCCL reports an error, another replica aborts, or the timeout.
  void await(cudaEvent_t e, const char* what, bool recycle = true) {
    const auto deadline = std::chrono::steady_clock::now() + opts_.timeout;
    for (;;) {
      const cudaError_t r = cudaEventQuery(e);
      if (r == cudaSuccess) {
        break;
      }
      if (r != cudaErrorNotReady) {
        fail(dp::detail::concat("dp: ", what, " on NCCL rank ", rank_, ": ", cudaGetErrorString(r)));
      }
      check_async(what);
      if (std::chrono::steady_clock::now() > deadline) {
        fail(dp::detail::concat("dp: ", what, detail::context_text(), " timed out on NCCL rank ", rank_, " of ", size_,
                                " after ", opts_.timeout.count(),
                                " ms: another rank stalled or died before joining it"));
      }
      std::this_thread::sleep_for(std::chrono::microseconds(20));
    }
    if (recycle) {
      s_->free.push_back(e);
    }
  }
  /// dp's stream continues after the collective; the event returns to the pool.
  void finish(request& q) {
    DP_CUDA_CHECK(cudaStreamWaitEvent(stream(), q.done, 0));
    s_->free.push_back(q.done);
    q.done = nullptr;
  }
  [[noreturn]] void fail(const std::string& why) {
    g_->abort(why);
    throw runtime_error(why);
  }

  std::shared_ptr<detail::nccl_group> g_;
  std::shared_ptr<detail::nccl_rank_state> s_;
  int index_, rank_, size_, device_;
  communicator_options opts_;
};

static_assert(communicator<nccl_communicator>);

/// One NCCL communicator per device of `devices` (CUDA devices of this process).
inline std::vector<nccl_communicator> make_nccl_communicators(const std::vector<int>& devices,
                                                              communicator_options o = {}) {
  detail::check_timeout(o, "NCCL communicator");
  auto g = std::make_shared<detail::nccl_group>();
  g->comms.resize(devices.size());
  DP_NCCL_CHECK(ncclCommInitAll(g->comms.data(), static_cast<int>(devices.size()), devices.data()));
  std::vector<nccl_communicator> out;
  const int n = static_cast<int>(devices.size());
  for (int i = 0; i < n; ++i) {
    out.emplace_back(g, i, i, n, devices[static_cast<std::size_t>(i)], o);
  }
  return out;
}

/// Rank `rank` of a communicator over `size` processes, one GPU each, joined through `id` (made by
/// ncclGetUniqueId on one rank and given to all: dist::session does it over MPI).
inline nccl_communicator make_nccl_communicator(const ncclUniqueId& id, int rank, int size, int device,
                                                communicator_options o = {}) {
  detail::check_timeout(o, "NCCL communicator");
  auto g = std::make_shared<detail::nccl_group>();
  g->comms.resize(1);
  dp::detail::cuda_device_guard guard(device);
  DP_NCCL_CHECK(ncclCommInitRank(&g->comms[0], size, id, rank));
  return nccl_communicator(std::move(g), 0, rank, size, device, o);
}

}  // namespace dp::inline DP_ABI::dist
#endif
