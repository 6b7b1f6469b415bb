// DLPack exchange without copies (PyTorch, CuPy, JAX and others speak it). The structures below
// follow the DLPack ABI (dlpack.h, v0.8), declared in dp's namespace so that including the official
// header as well does not clash; pointers to them may be passed where a DLManagedTensor* is expected.
// CUDA tensors cross between streams: DLPack leaves the ordering to the caller, so dp orders it. Given
// the other library's stream, each side waits for the other on the device; without it the host
// waits (dp's queued work on export, the whole device on import and when memory changes hands back).
#pragma once

#include <algorithm>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <type_traits>
#include <unordered_set>

#include <dp/core/error.hpp>
#include <dp/core/memory.hpp>
#include <dp/core/tensor.hpp>

namespace dp::inline DP_ABI::io::dlpack {

enum device_type : std::int32_t { kDLCPU = 1, kDLCUDA = 2 };
enum type_code : std::uint8_t { kDLInt = 0, kDLUInt = 1, kDLFloat = 2, kDLBool = 6 };

struct DLDevice {
  std::int32_t device_type;
  std::int32_t device_id;
};
struct DLDataType {
  std::uint8_t code;
  std::uint8_t bits;
  std::uint16_t lanes;
};
struct DLTensor {
  void* data;
  DLDevice device;
  std::int32_t ndim;
  DLDataType dtype;
  std::int64_t* shape;
  std::int64_t* strides;
  std::uint64_t byte_offset;
};
struct DLManagedTensor {
  DLTensor dl_tensor;
  void* manager_ctx;
  void (*deleter)(DLManagedTensor* self);
};

template <class T>
constexpr DLDataType dtype_of() {
  if constexpr (std::is_same_v<T, bool>) {
    return {kDLBool, 8, 1};
  } else if constexpr (std::is_floating_point_v<T>) {
    return {kDLFloat, static_cast<std::uint8_t>(8 * sizeof(T)), 1};
  } else if constexpr (std::is_signed_v<T>) {
    return {kDLInt, static_cast<std::uint8_t>(8 * sizeof(T)), 1};
  } else {
    return {kDLUInt, static_cast<std::uint8_t>(8 * sizeof(T)), 1};
  }
}

/// Another library's CUDA stream (a cudaStream_t), or none: then the host waits instead.
using stream_handle = std::optional<void*>;

namespace detail {
#if DP_HAS_CUDA
/// Makes `waiter` wait for the work queued on `producer` (dp's stream on `index` where nullopt is
/// passed for one side): on the device when both are known, else by blocking the host.
inline void order_streams(int index, stream_handle waiter, stream_handle producer) {
  dp::detail::cuda_device_guard g(index);
  if (waiter && producer) {
    dp::detail::cuda_stream_wait(static_cast<cudaStream_t>(*waiter), static_cast<cudaStream_t>(*producer));
  } else if (producer) {
    DP_CUDA_CHECK(cudaStreamSynchronize(static_cast<cudaStream_t>(*producer)));
  } else {
    DP_CUDA_CHECK(cudaDeviceSynchronize());
  }
}
#endif

/// The foreign tensors dp owns (imported, their deleter not called yet). A second import of one
/// would give it two owners, and its deleter would run twice.
class owned_imports {
 public:
  /// Records `m` as dp's; false when it is already.
  static bool claim(const DLManagedTensor* m) {
    const std::lock_guard lock(mutex());
    return set().insert(m).second;
  }
  /// Forgets `m`, whose deleter is about to run (its address may then be reused).
  static void release(const DLManagedTensor* m) noexcept {
    try {
      const std::lock_guard lock(mutex());
      set().erase(m);
    } catch (...) {  // a deleter cannot throw; a lock that fails leaves a stale entry, never a double free
    }
  }

 private:
  static std::mutex& mutex() {
    static std::mutex m;
    return m;
  }
  static std::unordered_set<const DLManagedTensor*>& set() {
    static std::unordered_set<const DLManagedTensor*> s;
    return s;
  }
};

/// Refuses strides that give two indices one address (shape {2, 2} with strides {1, 1}): a write
/// would reach that element twice. Stride 0 (a broadcast) stays: writes to those are refused where
/// they happen. Sorted by stride, each dimension must step past the memory the smaller ones span
/// (a sufficient rule, as PyTorch's: some interleavings that do not overlap are refused too).
/// Strides are non-negative and the whole span fits, both checked before.
inline void check_no_overlap(const dp::shape& s, const dp::shape& st) {
  int dims[max_rank];
  int n = 0;
  for (int i = 0; i < s.rank(); ++i) {
    if (s[i] > 1 && st[i] != 0) {
      dims[n++] = i;
    }
  }
  std::stable_sort(dims, dims + n, [&](int a, int b) { return st[a] < st[b]; });
  index_t span = 1;  // elements from the first to one past the last, over the dimensions seen
  for (int k = 0; k < n; ++k) {
    const int i = dims[k];
    DP_CHECK(st[i] >= span, shape_error, "dp: from_dlpack: shape ", s, " with strides ", st,
             " gives distinct indices the same memory (dimension ", i, "'s stride ", st[i], " is less than the ", span,
             " elements the dimensions of smaller strides span); make the tensor contiguous first (x.contiguous() in "
             "PyTorch)");
    span += st[i] * (s[i] - 1);
  }
}

/// Refuses a host bool tensor holding a byte other than 0 or 1: reading it as bool is undefined
/// behaviour (a kernel may see it as true and false at once). Names the first such element. Each
/// byte is read once: a dimension of stride 0 (a broadcast, torch's expand) is walked as one index,
/// since {2^62} elements of stride 0 are one byte, read 2^62 times.
inline void check_bool_bytes(const unsigned char* p, const dp::shape& shape, const dp::shape& st) {
  dp::shape s = shape;  // the indices walked
  for (int i = 0; i < s.rank(); ++i) {
    if (st[i] == 0 && s[i] > 0) {
      s[i] = 1;
    }
  }
  index_t at[max_rank] = {};
  index_t offset = 0;
  for (index_t n = s.numel(); n > 0; --n) {
    if (p[offset] > 1) {
      throw value_error(dp::detail::concat(
          "dp: from_dlpack: the bool tensor of shape ", shape, " holds the byte ", int(p[offset]), " at index ",
          dp::shape(std::span<const index_t>(at, static_cast<std::size_t>(s.rank()))),
          " (expected 0 or 1, the only bytes a bool may hold); convert it to 0 and 1 before exporting it"));
    }
    for (int i = s.rank() - 1; i >= 0; --i) {  // the next index in row-major order
      if (++at[i] < s[i]) {
        offset += st[i];
        break;
      }
      offset -= st[i] * (s[i] - 1);
      at[i] = 0;
    }
  }
}

template <class T>
struct exported {
  DLManagedTensor managed{};
  tensor<T> keep;  // holds the storage while the consumer uses it
  std::int64_t shape[max_rank]{}, strides[max_rank]{};
  stream_handle consumer;

  static void release(DLManagedTensor* self) {
    auto* e = static_cast<exported*>(self->manager_ctx);
#if DP_HAS_CUDA
    if (e->keep.device().is_cuda()) {  // the consumer's work on it finishes before dp reuses the block
      try {
        order_streams(e->keep.device().index, dp::detail::cuda_stream(e->keep.device().index), e->consumer);
      } catch (...) {  // a deleter cannot throw; the device's error resurfaces at dp's next call
      }
    }
#endif
    delete e;
  }
};
}  // namespace detail

/// Exports a tensor: no copy; the storage lives until the consumer calls the deleter. A CUDA tensor
/// is ready on `consumer_stream` (the consumer's stream waits for dp's), or, without one, on every
/// stream (the host waits for dp's queued work).
template <class T>
DLManagedTensor* to_dlpack(const tensor<T>& t, stream_handle consumer_stream = std::nullopt) {
  DP_CHECK(t.defined(), value_error, "dp: to_dlpack of an undefined tensor");
#if DP_HAS_CUDA
  if (t.device().is_cuda()) {
    const stream_handle dp_stream = dp::detail::cuda_stream(t.device().index);
    if (consumer_stream) {
      detail::order_streams(t.device().index, consumer_stream, dp_stream);
    } else {
      dp::detail::cuda_sync(t.device().index);
    }
  }
#endif
  auto e = std::make_unique<detail::exported<T>>();
  e->keep = t;
  e->consumer = consumer_stream;
  for (int i = 0; i < t.rank(); ++i) {
    e->shape[i] = t.shape()[i];
    e->strides[i] = t.strides()[i];
  }
  DLTensor& d = e->managed.dl_tensor;
  d.data = t.data();
  d.device = {t.device().is_cuda() ? kDLCUDA : kDLCPU, t.device().is_cuda() ? t.device().index : 0};
  d.ndim = t.rank();
  d.dtype = dtype_of<T>();
  d.shape = e->shape;
  d.strides = e->strides;
  d.byte_offset = 0;
  e->managed.manager_ctx = e.get();
  e->managed.deleter = &detail::exported<T>::release;
  return &e.release()->managed;
}

/// Imports a DLPack tensor without copying; dp calls its deleter when the last tensor lets go.
/// The element type must be T's; host memory becomes a dp::cpu() tensor, CUDA memory a dp::cuda(i) one.
/// For CUDA memory, dp's stream waits for `producer_stream` (or, without one, for the whole device)
/// before using it, and dp's work on it is finished before the deleter runs.
template <class T>
tensor<T> from_dlpack(DLManagedTensor* m, stream_handle producer_stream = std::nullopt) {
  DP_CHECK(m != nullptr, value_error, "dp: from_dlpack of a null tensor");
  const DLTensor& d = m->dl_tensor;
  const DLDataType want = dtype_of<T>();
  DP_CHECK(d.dtype.code == want.code && d.dtype.bits == want.bits && d.dtype.lanes == 1, value_error,
           "dp: from_dlpack: the tensor holds type code ", int(d.dtype.code), " with ", int(d.dtype.bits),
           " bits, not the requested element type (code ", int(want.code), ", ", int(want.bits), " bits)");
  DP_CHECK(d.device.device_type == kDLCPU || d.device.device_type == kDLCUDA, device_error,
           "dp: from_dlpack: device type ", d.device.device_type, " is neither the host nor CUDA");
  DP_CHECK(d.ndim >= 0 && d.ndim <= max_rank, shape_error, "dp: from_dlpack: ", d.ndim, " dimensions (at most ",
           max_rank, ")");
  if (m->deleter == &detail::exported<T>::release) {
    // dp's own export coming back: the original tensor, so the round trip keeps its storage (and
    // shares_storage with the tensor that was exported).
    tensor<T> back = static_cast<detail::exported<T>*>(m->manager_ctx)->keep;
    m->deleter(m);
    return back;
  }
  const dp::device dev = d.device.device_type == kDLCUDA ? dp::cuda(d.device.device_id) : dp::cpu();
  DP_CHECK(d.ndim == 0 || d.shape != nullptr, shape_error, "dp: from_dlpack: ", d.ndim,
           " dimensions but no shape array");
  dp::shape s, st;
  for (int i = 0; i < d.ndim; ++i) {
    DP_CHECK(d.shape[i] >= 0, shape_error, "dp: from_dlpack: dimension ", i, " has extent ", d.shape[i],
             " (expected 0 or more)");
    s.push_back(d.shape[i]);
  }
  // The element count must fit a 64-bit index, with strides or without ({2^62, 2} with strides 0
  // counted -2^63 elements), and without strides dp computes them: the non-zero extents' product
  // must fit ({0, 2^40, 2^40} holds nothing, but its strides overflowed), as for reshape.
  dp::detail::check_extents(s, "from_dlpack");
  const auto numel = static_cast<std::size_t>(s.numel());  // no prefix of the product can wrap now
  st = d.strides ? dp::shape(std::span<const index_t>(d.strides, static_cast<std::size_t>(d.ndim)))
                 : contiguous_strides(s);
  for (int i = 0; i < d.ndim; ++i) {
    DP_CHECK(st[i] >= 0, shape_error, "dp: from_dlpack: dimension ", i, " has stride ", st[i],
             " (negative strides are not supported)");
  }
  std::size_t extent = 1;  // elements from the first to one past the last
  for (int i = 0; i < d.ndim && numel > 0; ++i) {
    std::size_t step = 0;
    DP_CHECK(!__builtin_mul_overflow(static_cast<std::size_t>(s[i] - 1), static_cast<std::size_t>(st[i]), &step) &&
                 !__builtin_add_overflow(extent, step, &extent),
             shape_error, "dp: from_dlpack: shape ", s, " with strides ", st, " spans more than memory can address");
  }
  std::size_t bytes = 0;
  DP_CHECK(!__builtin_mul_overflow(numel == 0 ? 0 : extent, sizeof(T), &bytes) &&
               bytes <= static_cast<std::size_t>(INT64_MAX),
           shape_error, "dp: from_dlpack: shape ", s, " with strides ", st, " spans more than memory can address");
  if (numel > 0) {
    detail::check_no_overlap(s, st);
  }
  if (dev.is_cuda()) {
    DP_CHECK(DP_HAS_CUDA, device_error, "dp: from_dlpack: the tensor is in the memory of CUDA device ",
             d.device.device_id, ", but this file was compiled without CUDA (compile it with nvcc and link dp::cuda)");
    require_usable(dev);
#if DP_HAS_CUDA
    detail::order_streams(dev.index, dp::detail::cuda_stream(dev.index), producer_stream);
#endif
  }
  // Kernels read the elements as T: a null or misaligned address would fault or be undefined there.
  DP_CHECK(numel == 0 || d.data != nullptr, value_error, "dp: from_dlpack: the tensor of shape ", s,
           " has a null data pointer for its ", numel, " elements");
  // The offset and the span must stay within the address space: a sum that wraps (data + 8 with
  // byte_offset 2^64 - 8) would point back into memory the tensor does not describe.
  std::uintptr_t first = 0, last = 0;
  DP_CHECK(
      d.data == nullptr || (!__builtin_add_overflow(reinterpret_cast<std::uintptr_t>(d.data), d.byte_offset, &first) &&
                            !__builtin_add_overflow(first, bytes, &last)),
      value_error, "dp: from_dlpack: the data pointer ", static_cast<const void*>(d.data), " plus byte_offset ",
      d.byte_offset, " plus the ", bytes, " bytes of shape ", s, " with strides ", st,
      " wraps past the end of the address space (expected an offset into the producer's memory)");
  auto* data = d.data == nullptr ? nullptr : static_cast<char*>(d.data) + d.byte_offset;
  DP_CHECK(reinterpret_cast<std::uintptr_t>(data) % alignof(T) == 0, value_error, "dp: from_dlpack: the data at ",
           static_cast<const void*>(data), " (data plus byte_offset ", d.byte_offset, ") is not aligned to the ",
           alignof(T), " bytes its elements need");
  if constexpr (std::is_same_v<T, bool>) {
    // Host bytes are checked here. CUDA memory is not (that would take a device pass per import): a
    // GPU bool tensor's bytes are the producer's to keep 0 or 1.
    if (!dev.is_cuda()) {
      detail::check_bool_bytes(reinterpret_cast<const unsigned char*>(data), s, st);
    }
  }
  DP_CHECK(detail::owned_imports::claim(m), value_error, "dp: from_dlpack: the DLManagedTensor at ",
           static_cast<const void*>(m),
           " is imported already and dp owns it (its deleter runs when the last tensor of that import lets go); "
           "a second import would call the deleter twice: import it once and share or copy that tensor");
  dp::detail::storage_ref storage;
  try {
    storage = dp::detail::adopt(
        dev, data, bytes,
        [](void* ctx, void*) {
          auto* managed = static_cast<DLManagedTensor*>(ctx);
          detail::owned_imports::release(managed);
#if DP_HAS_CUDA
          if (managed->dl_tensor.device.device_type == kDLCUDA) {  // dp's queued work on it comes first
            try {
              dp::detail::cuda_sync(managed->dl_tensor.device.device_id);
            } catch (...) {  // a deleter cannot throw; the device's error resurfaces at dp's next call
            }
          }
#endif
          if (managed->deleter) {
            managed->deleter(managed);
          }
        },
        m);
  } catch (...) {
    detail::owned_imports::release(m);  // not adopted: the caller's still
    throw;
  }
  return tensor<T>(std::move(storage), 0, s, st);
}

}  // namespace dp::inline DP_ABI::io::dlpack
