// Memory: reference-counted storage blocks from a caching pool per device. A freed block goes back
// to its pool's free list for its size class, so a steady-state loop that frees and requests the
// same sizes never reaches the system allocator (nor cudaMalloc).
#pragma once

#include <array>
#include <atomic>
#include <bit>
#include <cstdlib>
#include <cstring>
#include <mutex>

#include <dp/config.hpp>
#include <dp/core/counters.hpp>
#include <dp/core/cuda_support.hpp>
#include <dp/core/device.hpp>
#include <dp/core/error.hpp>

namespace dp::inline DP_ABI {

/// Bytes held by one device's pool.
struct memory_stats {
  std::size_t in_use = 0;        ///< bytes of live blocks (rounded to their size class)
  std::size_t cached = 0;        ///< bytes of freed blocks kept for reuse
  std::size_t peak_in_use = 0;   ///< the high-water mark of in_use since the last reset
  std::int64_t allocations = 0;  ///< blocks taken from the system
};

namespace detail {

inline constexpr std::size_t host_alignment = 64;
inline constexpr int size_classes = 4 * 64;

/// Size class: 256 bytes and below share one; above, four classes per power of two (waste <= 25%).
inline int size_class_of(std::size_t bytes) {
  if (bytes <= 256) {
    return 0;
  }
  const int p = std::bit_width(bytes - 1);  // 2^(p-1) < bytes <= 2^p
  const std::size_t base = std::size_t{1} << (p - 1);
  const int quarter = static_cast<int>((bytes - base + (base / 4) - 1) / (base / 4));  // 1..4
  return (p - 9) * 4 + quarter;
}
inline std::size_t size_class_bytes(int cls) {
  if (cls == 0) {
    return 256;
  }
  const int p = (cls - 1) / 4 + 9, quarter = (cls - 1) % 4 + 1;
  const std::size_t base = std::size_t{1} << (p - 1);
  return base + quarter * (base / 4);
}

/// A block of memory with an intrusive reference count. Headers come from a free list of their own.
struct storage {
  std::atomic<int> refs{0};
  void* data = nullptr;
  std::size_t bytes = 0;  // usable size (the size class, or the adopted size)
  device dev{};
  int size_class = -1;  // -1: adopted memory released through `deleter`
  void (*deleter)(void* ctx, void* data) = nullptr;
  void* deleter_ctx = nullptr;
  storage* next = nullptr;
  std::uint64_t born = 0;  // when it was handed out (birth_clock): the write guard's "older than"
};

/// Counts allocations: a block's `born` orders it against a moment (forward may write only
/// tensors it made itself).
inline std::atomic<std::uint64_t>& birth_clock() {
  static std::atomic<std::uint64_t> clock{1};
  return clock;
}

/// Free list of storage headers; slabs are never returned, so after warm-up this never allocates.
class header_pool {
 public:
  static header_pool& instance() {
    static header_pool p;
    return p;
  }
  storage* get() {
    std::lock_guard lock(m_);
    if (!free_) {
      constexpr int slab = 256;
      auto* block = new storage[slab];
      for (int i = 0; i < slab; ++i) {
        block[i].next = free_;
        free_ = &block[i];
      }
    }
    storage* s = free_;
    free_ = s->next;
    s->next = nullptr;
    return s;
  }
  void put(storage* s) {
    s->data = nullptr;
    s->deleter = nullptr;
    s->deleter_ctx = nullptr;
    s->size_class = -1;
    std::lock_guard lock(m_);
    s->next = free_;
    free_ = s;
  }

 private:
  std::mutex m_;
  storage* free_ = nullptr;
};

/// The caching pool of one device.
class device_pool {
 public:
  explicit device_pool(device d) : dev_(d) {}

  storage* acquire(std::size_t bytes) {
    const int cls = size_class_of(bytes);
    DP_CHECK(cls < size_classes, value_error, "dp: cannot allocate ", bytes, " bytes");
    storage* s = nullptr;
    {
      std::lock_guard lock(m_);
      s = free_[cls];
      if (s) {
        free_[cls] = s->next;
        s->next = nullptr;
        stats_.cached -= s->bytes;
      }
    }
    if (s) {
      DP_COUNT(pool_hits, 1);
    } else {
      const std::size_t cap = size_class_bytes(cls);
      void* data = system_alloc(cap);
      if (!data) {
        empty();  // give cached blocks back and try once more
        data = system_alloc(cap);
      }
      DP_CHECK(data, error, "dp: out of memory on ", dev_, " allocating ", cap, " bytes");
      DP_COUNT(allocations, 1);
      s = header_pool::instance().get();
      s->data = data;
      s->bytes = cap;
      s->dev = dev_;
      s->size_class = cls;
      std::lock_guard lock(m_);
      ++stats_.allocations;
    }
    std::lock_guard lock(m_);
    stats_.in_use += s->bytes;
    stats_.peak_in_use = std::max(stats_.peak_in_use, stats_.in_use);
    return s;
  }

  void release(storage* s) {
    std::lock_guard lock(m_);
    stats_.in_use -= s->bytes;
    stats_.cached += s->bytes;
    s->next = free_[s->size_class];
    free_[s->size_class] = s;
  }

  /// Returns every cached block to the system.
  void empty() {
    storage* all = nullptr;
    {
      std::lock_guard lock(m_);
      for (auto& head : free_) {
        while (head) {
          storage* s = head;
          head = s->next;
          s->next = all;
          all = s;
        }
      }
      stats_.cached = 0;
    }
    while (all) {
      storage* s = all;
      all = s->next;
      system_free(s->data);
      header_pool::instance().put(s);
    }
  }

  memory_stats stats() {
    std::lock_guard lock(m_);
    return stats_;
  }
  void reset_peak() {
    std::lock_guard lock(m_);
    stats_.peak_in_use = stats_.in_use;
  }

 private:
  void* system_alloc(std::size_t bytes) {
    if (dev_.is_cpu()) {
      return std::aligned_alloc(host_alignment, bytes);
    }
#if DP_HAS_CUDA
    cuda_device_guard g(dev_.index);
    void* p = nullptr;
    if (cudaMalloc(&p, bytes) != cudaSuccess) {
      (void)cudaGetLastError();
      return nullptr;
    }
    return p;
#else
    return nullptr;
#endif
  }
  void system_free(void* p) {
    if (dev_.is_cpu()) {
      std::free(p);
      return;
    }
#if DP_HAS_CUDA
    cuda_device_guard g(dev_.index);
    (void)cudaFree(p);
#endif
  }

  device dev_;
  std::mutex m_;
  std::array<storage*, size_classes> free_{};
  memory_stats stats_{};
};

inline constexpr int max_pools_per_kind = 256;

/// The pool of a device, created on first use. Host workers each have their own pool, so workers
/// running side by side do not contend on one lock.
inline device_pool& pool_of(device d) {
  static std::array<std::atomic<device_pool*>, 2 * max_pools_per_kind> pools{};
  static std::mutex m;
  DP_CHECK(d.index >= 0 && d.index < max_pools_per_kind, device_error, "dp: device index of ", d,
           " is out of range (at most ", max_pools_per_kind, " devices per kind)");
  auto& slot = pools[(d.is_cuda() ? max_pools_per_kind : 0) + d.index];
  device_pool* p = slot.load(std::memory_order_acquire);
  if (!p) {
    std::lock_guard lock(m);
    p = slot.load();
    if (!p) {
      p = new device_pool(d);  // lives for the program
      slot.store(p, std::memory_order_release);
    }
  }
  return *p;
}

inline void release_storage(storage* s) {
  if (s->size_class < 0) {
    if (s->deleter) {
      s->deleter(s->deleter_ctx, s->data);
    }
    header_pool::instance().put(s);
  } else {
    pool_of(s->dev).release(s);
  }
}

/// Owning, intrusively counted handle to a storage block. Copies share the block.
class storage_ref {
 public:
  storage_ref() = default;
  explicit storage_ref(storage* s) noexcept : s_(s) {
    if (s_) {
      s_->refs.fetch_add(1, std::memory_order_relaxed);
    }
  }
  storage_ref(const storage_ref& o) noexcept : storage_ref(o.s_) {}
  storage_ref(storage_ref&& o) noexcept : s_(o.s_) { o.s_ = nullptr; }
  storage_ref& operator=(const storage_ref& o) noexcept {
    storage_ref(o).swap(*this);
    return *this;
  }
  storage_ref& operator=(storage_ref&& o) noexcept {
    storage_ref(std::move(o)).swap(*this);
    return *this;
  }
  ~storage_ref() { reset(); }

  void reset() noexcept {
    if (s_ && s_->refs.fetch_sub(1, std::memory_order_acq_rel) == 1) {
      release_storage(s_);
    }
    s_ = nullptr;
  }
  void swap(storage_ref& o) noexcept { std::swap(s_, o.s_); }
  storage* get() const noexcept { return s_; }
  storage* operator->() const noexcept { return s_; }
  explicit operator bool() const noexcept { return s_ != nullptr; }
  int use_count() const noexcept { return s_ ? s_->refs.load() : 0; }

 private:
  storage* s_ = nullptr;
};

/// A block of at least `bytes` bytes on `d` (from the pool when one of its size class is free).
inline storage_ref allocate(device d, std::size_t bytes) {
  require_usable(d);
  storage* s = pool_of(d).acquire(bytes);
  s->born = birth_clock().fetch_add(1, std::memory_order_relaxed);
  return storage_ref(s);
}

/// Wraps memory someone else owns; `deleter(ctx, data)` runs when the last tensor lets go.
inline storage_ref adopt(device d, void* data, std::size_t bytes, void (*deleter)(void*, void*), void* ctx) {
  storage* s = header_pool::instance().get();
  s->data = data;
  s->bytes = bytes;
  s->dev = d;
  s->size_class = -1;
  s->deleter = deleter;
  s->deleter_ctx = ctx;
  s->born = birth_clock().fetch_add(1, std::memory_order_relaxed);
  return storage_ref(s);
}

/// Copies bytes between any two devices (synchronous with respect to the host).
inline void copy_bytes(void* dst, device dst_dev, const void* src, device src_dev, std::size_t bytes) {
  if (bytes == 0) {
    return;
  }
  if (dst_dev.is_cpu() && src_dev.is_cpu()) {
    std::memcpy(dst, src, bytes);
    return;
  }
#if DP_HAS_CUDA
  if (dst_dev.is_cuda() && src_dev.is_cuda() && dst_dev.index != src_dev.index) {
    // On dp's (non-blocking) streams, never the legacy stream: after the source's pending work,
    // before the destination's next, and finished before the host goes on.
    cuda_sync(src_dev.index);
    cuda_device_guard g(dst_dev.index);
    DP_CUDA_CHECK(cudaMemcpyPeerAsync(dst, dst_dev.index, src, src_dev.index, bytes, cuda_stream(dst_dev.index)));
    cuda_sync(dst_dev.index);
    return;
  }
  const int idx = dst_dev.is_cuda() ? dst_dev.index : src_dev.index;
  cuda_device_guard g(idx);
  DP_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, cuda_stream(idx)));
  cuda_sync(idx);
#else
  require_usable(dst_dev.is_cuda() ? dst_dev : src_dev);
#endif
}

}  // namespace detail

/// Statistics of a device's caching pool.
inline memory_stats memory_usage(device d) { return detail::pool_of(d).stats(); }

/// Starts a new peak measurement for a device.
inline void reset_peak_memory(device d) { detail::pool_of(d).reset_peak(); }

/// Returns a device's cached (free) blocks to the system.
inline void empty_cache(device d) { detail::pool_of(d).empty(); }

}  // namespace dp::inline DP_ABI
