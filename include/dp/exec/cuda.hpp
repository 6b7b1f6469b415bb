// The CUDA executor: the same evaluator trees as the host loop, run as one grid-stride kernel per
// assignment, and reductions (CUB for whole-tensor reductions, a kernel per output layout otherwise).
// Only in files compiled by nvcc.
#pragma once

#include <dp/config.hpp>

#if DP_HAS_CUDA
#include <cub/device/device_reduce.cuh>
#include <cuda_runtime.h>
#include <thrust/iterator/counting_iterator.h>
#include <thrust/iterator/transform_iterator.h>

#include <dp/core/counters.hpp>
#include <dp/core/cuda_support.hpp>
#include <dp/core/memory.hpp>
#include <dp/exec/dispatch.hpp>
#include <dp/exec/for_each.hpp>
#include <dp/exec/plan.hpp>
#include <dp/exec/reduce_ops.hpp>
#include <dp/expr/node.hpp>

namespace dp::inline DP_ABI::detail {

inline constexpr int cuda_block = 256;

/// Flat, unit-stride case: out[i] = ev(i). Each thread handles four elements a grid-stride apart
/// per iteration (independent loads in flight, every access coalesced).
template <bool Acc, class T, class V>
DP_HOST_DEVICE DP_FORCEINLINE void store_value(T* p, V v) {
  *p = Acc ? static_cast<T>(*p + static_cast<T>(v)) : static_cast<T>(v);
}

template <bool Acc, class T, class Ev>
__global__ void elementwise_flat_kernel(T* __restrict__ out, Ev ev, index_t n) {
  const index_t stride = static_cast<index_t>(gridDim.x) * blockDim.x;
  index_t i = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  for (; i + 3 * stride < n; i += 4 * stride) {
    const auto v0 = ev.template at<true>(i), v1 = ev.template at<true>(i + stride);
    const auto v2 = ev.template at<true>(i + 2 * stride), v3 = ev.template at<true>(i + 3 * stride);
    store_value<Acc>(out + i, v0);
    store_value<Acc>(out + i + stride, v1);
    store_value<Acc>(out + i + 2 * stride, v2);
    store_value<Acc>(out + i + 3 * stride, v3);
  }
  for (; i < n; i += stride) {
    store_value<Acc>(out + i, ev.template at<true>(i));
  }
}

template <int N>
struct cuda_dims {
  int rank;
  index_t ext[max_rank];
  index_t ost[max_rank];
};

/// General case: each thread finds its coordinate and reads every operand through its strides.
template <bool Acc, class T, class Ev, int N>
__global__ void elementwise_nd_kernel(T* __restrict__ out, Ev ev, cuda_dims<N> dims, index_t n) {
  for (index_t i = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<index_t>(gridDim.x) * blockDim.x) {
    index_t c[max_rank];
    index_t rest = i, off = 0;
    for (int d = dims.rank - 1; d >= 0; --d) {
      c[d] = rest % dims.ext[d];
      rest /= dims.ext[d];
      off += c[d] * dims.ost[d];
    }
    store_value<Acc>(out + off, ev.at_coord(c));
  }
}

/// out[i] = ev(i) (or out[i] += ev(i) with Acc) over the iteration, on the target's stream.
template <bool Acc = false, class T, int N, class Ev>
void elementwise(cuda_target on, T* out, const iteration<N>& it, const Ev& ev) {
  const int dev = on.index;
  if (it.numel == 0) {
    return;
  }
  DP_COUNT(passes, 1);
  cuda_device_guard g(dev);
  cudaStream_t s = cuda_stream(dev);
  const unsigned grid = grid_for((it.numel + 3) / 4, cuda_block);
  if (it.rank == 1 && it.unit) {
    elementwise_flat_kernel<Acc><<<grid, cuda_block, 0, s>>>(out, ev, it.numel);
  } else {
    cuda_dims<N> dims{it.rank, {}, {}};
    for (int d = 0; d < it.rank; ++d) {
      dims.ext[d] = it.ext[d];
      dims.ost[d] = it.st[0][d];
    }
    elementwise_nd_kernel<Acc><<<grid_for(it.numel, cuda_block), cuda_block, 0, s>>>(out, ev, dims, it.numel);
  }
  DP_CUDA_CHECK(cudaGetLastError());
}

/// Layout of a reduction for the kernels: kept and reduced dimensions of the collapsed iteration.
struct cuda_reduce_dims {
  int rank, nk, nr;
  index_t ext[max_rank], ost[max_rank];
  int kept[max_rank], red[max_rank];
  index_t red_count;
};

/// The input coordinate of (output o, reduced position j).
DP_HOST_DEVICE DP_FORCEINLINE index_t reduce_coord(const cuda_reduce_dims& d, index_t o, index_t j, index_t* c) {
  index_t off = 0;
  for (int k = d.nk - 1; k >= 0; --k) {
    const int dim = d.kept[k];
    c[dim] = o % d.ext[dim];
    o /= d.ext[dim];
    off += c[dim] * d.ost[dim];
  }
  for (int k = d.nr - 1; k >= 0; --k) {
    const int dim = d.red[k];
    c[dim] = j % d.ext[dim];
    j /= d.ext[dim];
  }
  return off;
}

/// Many outputs: one thread per output, reduced positions in order (coalesced when the innermost
/// dimension is kept, as for a bias gradient).
template <class T, class A>
DP_HOST_DEVICE DP_FORCEINLINE void cuda_store(T* p, A v, bool accumulate) {
  *p = accumulate ? static_cast<T>(static_cast<A>(*p) + v) : static_cast<T>(v);
}

template <class Op, class A, class T, class Ev>
__global__ void reduce_thread_kernel(T* out, Ev ev, cuda_reduce_dims d, index_t outputs, A scale, bool apply,
                                     bool accumulate) {
  for (index_t o = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x; o < outputs;
       o += static_cast<index_t>(gridDim.x) * blockDim.x) {
    index_t c[max_rank];
    A acc = Op::template identity<A>();
    index_t off = 0;
    for (index_t j = 0; j < d.red_count; ++j) {
      off = reduce_coord(d, o, j, c);
      acc = Op::combine(acc, static_cast<A>(ev.at_coord(c)));
    }
    cuda_store(out + off, apply ? acc * scale : acc, accumulate);
  }
}

/// Few outputs: one block per output, threads striding over the reduced positions.
template <class Op, class A, class T, class Ev>
__global__ void reduce_block_kernel(T* out, Ev ev, cuda_reduce_dims d, A scale, bool apply, bool accumulate) {
  __shared__ A part[cuda_block];
  const index_t o = blockIdx.x;
  index_t c[max_rank];
  A acc = Op::template identity<A>();
  index_t off = 0;
  for (index_t j = threadIdx.x; j < d.red_count; j += blockDim.x) {
    off = reduce_coord(d, o, j, c);
    acc = Op::combine(acc, static_cast<A>(ev.at_coord(c)));
  }
  part[threadIdx.x] = acc;
  __syncthreads();
  for (int w = blockDim.x / 2; w > 0; w /= 2) {
    if (threadIdx.x < w) {
      part[threadIdx.x] = Op::combine(part[threadIdx.x], part[threadIdx.x + w]);
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    off = reduce_coord(d, o, 0, c);
    cuda_store(out + off, apply ? part[0] * scale : part[0], accumulate);
  }
}

template <class A, class Ev>
struct cuda_value_at {
  Ev ev;
  cuda_dims<1> dims;
  DP_HOST_DEVICE A operator()(index_t i) const {
    index_t c[max_rank];
    for (int d = dims.rank - 1; d >= 0; --d) {
      c[d] = i % dims.ext[d];
      i /= dims.ext[d];
    }
    return static_cast<A>(ev.at_coord(c));
  }
};

template <class Op>
struct cuda_combine {
  template <class A>
  DP_HOST_DEVICE A operator()(A a, A b) const {
    return Op::combine(a, b);
  }
};

template <class A, class T>
__global__ void finish_scalar_kernel(T* out, const A* acc, A scale, bool apply, bool accumulate) {
  cuda_store(out, apply ? *acc * scale : *acc, accumulate);
}

template <class Op, class A, class T, int N, class Ev>
void reduce_into(cuda_target on, T* out, const iteration<N>& it, const Ev& ev, A scale, bool apply, bool accumulate) {
  const int dev = on.index;
  DP_COUNT(passes, 1);
  cuda_device_guard g(dev);
  cudaStream_t s = cuda_stream(dev);
  cuda_reduce_dims d{};
  d.rank = it.rank;
  index_t outputs = 1;
  d.red_count = 1;
  for (int k = 0; k < it.rank; ++k) {
    d.ext[k] = it.ext[k];
    d.ost[k] = it.st[0][k];
    if (it.st[0][k] == 0 && it.ext[k] > 1) {
      d.red[d.nr++] = k;
      d.red_count *= it.ext[k];
    } else {
      d.kept[d.nk++] = k;
      outputs *= it.ext[k];
    }
  }
  if (outputs == 1 && d.red_count > 1) {
    cuda_dims<1> dims{it.rank, {}, {}};
    for (int k = 0; k < it.rank; ++k) {
      dims.ext[k] = it.ext[k];
    }
    auto values =
        thrust::make_transform_iterator(thrust::counting_iterator<index_t>(0), cuda_value_at<A, Ev>{ev, dims});
    storage_ref acc = allocate(cuda(dev), sizeof(A));
    std::size_t temp_bytes = 0;
    DP_CUDA_CHECK(cub::DeviceReduce::Reduce(nullptr, temp_bytes, values, static_cast<A*>(acc->data), it.numel,
                                            cuda_combine<Op>{}, Op::template identity<A>(), s));
    storage_ref temp = allocate(cuda(dev), temp_bytes);
    DP_CUDA_CHECK(cub::DeviceReduce::Reduce(temp->data, temp_bytes, values, static_cast<A*>(acc->data), it.numel,
                                            cuda_combine<Op>{}, Op::template identity<A>(), s));
    finish_scalar_kernel<<<1, 1, 0, s>>>(out, static_cast<const A*>(acc->data), scale, apply, accumulate);
  } else if (outputs >= 2048 || d.red_count < 64) {
    reduce_thread_kernel<Op, A>
        <<<grid_for(outputs, cuda_block), cuda_block, 0, s>>>(out, ev, d, outputs, scale, apply, accumulate);
  } else {
    reduce_block_kernel<Op, A>
        <<<static_cast<unsigned>(outputs), cuda_block, 0, s>>>(out, ev, d, scale, apply, accumulate);
  }
  DP_CUDA_CHECK(cudaGetLastError());
}

}  // namespace dp::inline DP_ABI::detail
#endif
