// The NCCL communicator for the GPUs of one process: ncclCommInitAll makes one communicator per
// device and each replica's thread drives its own, on dp's stream for that device (so collectives
// are ordered with the kernels that produce and consume the gradients). Only with CUDA and NCCL.
#pragma once

#include <dp/config.hpp>

#if DP_HAS_CUDA && DP_HAS_NCCL
#include <memory>
#include <string>
#include <vector>

#include <nccl.h>

#include <dp/core/cuda_support.hpp>
#include <dp/core/tensor.hpp>
#include <dp/dist/communicator.hpp>

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

struct nccl_comms {
  std::vector<ncclComm_t> comms;
  ~nccl_comms() {
    for (auto c : comms) {
      ncclCommDestroy(c);
    }
  }
};
}  // namespace detail

class nccl_communicator {
 public:
  nccl_communicator(std::shared_ptr<detail::nccl_comms> c, int rank, int device)
      : c_(std::move(c)), rank_(rank), device_(device) {}

  int rank() const noexcept { return rank_; }
  int size() const noexcept { return static_cast<int>(c_->comms.size()); }
  std::string name() const { return "NCCL communicator"; }

  template <class T>
  void all_reduce(tensor<T>& t, reduce_op op) {
    dp::detail::cuda_device_guard g(device_);
    DP_NCCL_CHECK(ncclAllReduce(t.data(), t.data(), static_cast<std::size_t>(t.numel()), detail::nccl_type<T>(),
                                detail::nccl_op(op), comm(), dp::detail::cuda_stream(device_)));
  }
  template <class T>
  void broadcast(tensor<T>& t, int root) {
    dp::detail::cuda_device_guard g(device_);
    DP_NCCL_CHECK(ncclBroadcast(t.data(), t.data(), static_cast<std::size_t>(t.numel()), detail::nccl_type<T>(), root,
                                comm(), dp::detail::cuda_stream(device_)));
  }
  template <class T>
  void all_gather(const tensor<T>& in, tensor<T>& out) {
    dp::detail::cuda_device_guard g(device_);
    DP_NCCL_CHECK(ncclAllGather(in.data(), out.data(), static_cast<std::size_t>(in.numel()), detail::nccl_type<T>(),
                                comm(), dp::detail::cuda_stream(device_)));
  }
  template <class T>
  void reduce_scatter(const tensor<T>& in, tensor<T>& out, reduce_op op) {
    dp::detail::cuda_device_guard g(device_);
    DP_NCCL_CHECK(ncclReduceScatter(in.data(), out.data(), static_cast<std::size_t>(out.numel()),
                                    detail::nccl_type<T>(), detail::nccl_op(op), comm(),
                                    dp::detail::cuda_stream(device_)));
  }
  void barrier() {
    // An all-reduce of one value is NCCL's barrier; the stream is synchronised so the host waits too.
    tensor<float> one = zeros<float>({1}, dp::cuda(device_));
    all_reduce(one, reduce_op::sum);
    dp::detail::cuda_sync(device_);
  }

 private:
  ncclComm_t comm() const { return c_->comms[static_cast<std::size_t>(rank_)]; }
  std::shared_ptr<detail::nccl_comms> c_;
  int rank_, device_;
};

static_assert(communicator<nccl_communicator>);

/// One NCCL communicator per device of `devices` (all CUDA devices of this process).
inline std::vector<nccl_communicator> make_nccl_communicators(const std::vector<int>& devices) {
  auto c = std::make_shared<detail::nccl_comms>();
  c->comms.resize(devices.size());
  DP_NCCL_CHECK(ncclCommInitAll(c->comms.data(), static_cast<int>(devices.size()), devices.data()));
  std::vector<nccl_communicator> out;
  for (std::size_t i = 0; i < devices.size(); ++i) {
    out.emplace_back(c, static_cast<int>(i), devices[i]);
  }
  return out;
}

}  // namespace dp::inline DP_ABI::dist
#endif
