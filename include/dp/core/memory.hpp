// Memory: reference-counted storage blocks from a caching pool per device. A freed block goes back
// to its pool's free list for its size class, so a steady-state loop that frees and requests the
// same sizes never reaches the system allocator (nor cudaMalloc). While a CUDA graph is captured,
// the device's blocks come from and return to the capture's private pool (see capture_pool).
#pragma once

#include <array>
#include <atomic>
#include <bit>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <utility>

#include <dp/config.hpp>
#include <dp/core/counters.hpp>
#include <dp/core/cuda_support.hpp>
#include <dp/core/device.hpp>
#include <dp/core/device_status.hpp>
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
  std::uint64_t born = 0;                // when it was handed out (birth_clock): the write guard's "older than"
  const void* trained_by = nullptr;      // the trainer whose parameters or buffers these are: it alone writes
  struct private_pool* owner = nullptr;  // the capture's pool it belongs to (nullptr: the device's)
  std::uint64_t owner_generation = 0;    // owner's generation when it joined (an older one is closed)
};

/// The blocks of one CUDA graph: every block its captured work used, given back or not, stays out of
/// the device's free lists until the graph is destroyed, since each replay writes them again. Pools
/// are recycled; a block whose generation differs from its pool's belongs to a closed one.
struct private_pool {
  std::array<storage*, size_classes> free{};
  std::uint64_t generation = 1;
  bool open = false;
  private_pool* next = nullptr;  // the device pool's list of closed pools for reuse
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
    s->owner = nullptr;
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
    bool capturing = false;
    {
      std::lock_guard lock(m_);
      capturing = capture_ != nullptr;
      if (capturing) {  // the capture's own blocks first, then a free one of the device joins it
        s = pop(capture_->free[cls]);
        if (!s && (s = pop(free_[cls])) != nullptr) {
          s->owner = capture_;
          s->owner_generation = capture_->generation;
        }
      } else {
        s = pop(free_[cls]);
      }
      if (s) {
        stats_.cached -= s->bytes;
      }
    }
    if (s) {
      DP_COUNT(pool_hits, 1);
    } else {
      const std::size_t cap = size_class_bytes(cls);
      // Neither cudaMalloc nor the cudaFree of empty() may run while a graph is captured.
      DP_CHECK(!capturing, device_error, "dp: the work captured in a CUDA graph on ", dev_, " needs a new block of ",
               cap,
               " bytes, and memory cannot be allocated while capturing; run the same work once before "
               "capturing it, so that its blocks are cached");
      std::string why;
      void* data = system_alloc(cap, why);
      if (!data && why.empty()) {
        empty();  // out of memory: give cached blocks back and try once more
        data = system_alloc(cap, why);
      }
      DP_CHECK(data, error, "dp: cannot allocate ", cap, " bytes on ", dev_, ": ",
               why.empty() ? std::string("out of memory") : why);
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
    private_pool* owner = s->owner;
    if (owner && (!owner->open || owner->generation != s->owner_generation)) {
      owner = nullptr;  // its graph is gone
    }
    if (!owner && capture_) {  // made before the capture, used by it: every replay may write it again
      owner = capture_;
    }
    s->owner = owner;
    s->owner_generation = owner ? owner->generation : 0;
    push(owner ? owner->free[s->size_class] : free_[s->size_class], s);
  }

  /// Starts routing this device's blocks through a new private pool (a CUDA graph's capture).
  private_pool* begin_capture() {
    std::lock_guard lock(m_);
    DP_CHECK(!capture_, runtime_error, "dp: a CUDA graph is already being captured on ", dev_,
             "; capture one graph at a time per device");
    private_pool* p = closed_;
    if (p) {
      closed_ = p->next;
      p->next = nullptr;
    } else {
      p = new private_pool;  // recycled, never freed: blocks may still name it
    }
    p->open = true;
    capture_ = p;
    return p;
  }
  /// Whether a CUDA graph is being captured on this device.
  bool capturing() {
    std::lock_guard lock(m_);
    return capture_ != nullptr;
  }
  /// Capture ended: blocks go back to the device's lists again (the private pool stays open).
  void end_capture() {
    std::lock_guard lock(m_);
    capture_ = nullptr;
  }
  /// The graph is gone: its free blocks return to the device's lists, its live ones when released.
  void close(private_pool* p) {
    std::lock_guard lock(m_);
    if (capture_ == p) {
      capture_ = nullptr;
    }
    for (int c = 0; c < size_classes; ++c) {
      while (storage* s = pop(p->free[c])) {
        s->owner = nullptr;
        push(free_[c], s);
      }
    }
    p->open = false;
    ++p->generation;
    p->next = closed_;
    closed_ = p;
  }

  /// Returns every cached block to the system.
  void empty() {
    storage* all = nullptr;
    {
      std::lock_guard lock(m_);
      DP_CHECK(!capture_, device_error, "dp: cannot empty the cache of ", dev_,
               " while a CUDA graph is being captured on it (freeing device memory would end the capture)");
      for (auto& head : free_) {
        while (head) {
          storage* s = head;
          head = s->next;
          s->next = all;
          all = s;
          stats_.cached -= s->bytes;  // not 0: blocks a CUDA graph's pool keeps are still cached
        }
      }
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
  static storage* pop(storage*& head) {
    storage* s = head;
    if (s) {
      head = s->next;
      s->next = nullptr;
    }
    return s;
  }
  static void push(storage*& head, storage* s) {
    s->next = head;
    head = s;
  }

  /// A new block from the system, or nullptr with `why` empty when out of memory; any other failure
  /// (a device left unusable by an earlier kernel fault, say) is said in `why`, not taken for one.
  void* system_alloc(std::size_t bytes, std::string& why) {
    if (dev_.is_cpu()) {
      return std::aligned_alloc(host_alignment, bytes);
    }
#if DP_HAS_CUDA
    cuda_device_guard g(dev_.index);
    void* p = nullptr;
    if (const cudaError_t e = cudaMalloc(&p, bytes); e != cudaSuccess) {
      (void)cudaGetLastError();
      if (e != cudaErrorMemoryAllocation) {
        why = concat("cudaMalloc failed: ", cudaGetErrorString(e));
      }
      return nullptr;
    }
    return p;
#else
    why = "this file was compiled without CUDA";
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
  private_pool* capture_ = nullptr;  // the capture in progress on this device
  private_pool* closed_ = nullptr;   // private pools to reuse
};

/// The pool of a device, created on first use. Host workers each have their own pool, so workers
/// running side by side do not contend on one lock.
inline device_pool& pool_of(device d) {
  static std::array<std::atomic<device_pool*>, max_host_workers + max_cuda_devices> pools{};
  static std::mutex m;
  require_index(d);
  auto& slot = pools[(d.is_cuda() ? max_host_workers : 0) + d.index];
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
  s->trained_by = nullptr;
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
  s->trained_by = nullptr;
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
  for (const device d : {dst_dev, src_dev}) {
    if (d.is_cuda()) {
      require_not_capturing(d.index);
    }
  }
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
  if (dst_dev.is_cpu()) {
    check_device_status(idx);  // a result read back: faults the kernels before it flagged
  }
#else
  require_usable(dst_dev.is_cuda() ? dst_dev : src_dev);
#endif
}

/// A CUDA graph's private pool on one device: begun when capture starts, so that the blocks the
/// captured work uses (new ones and those it gives back) never reach the device's free lists while
/// the graph can replay; end_capture() when capture ends; closed when this is destroyed.
class capture_pool {
 public:
  explicit capture_pool(device d) : pool_(&pool_of(d)), p_(pool_->begin_capture()) {}
  capture_pool(capture_pool&& o) noexcept : pool_(o.pool_), p_(std::exchange(o.p_, nullptr)) {}
  capture_pool& operator=(capture_pool&&) = delete;
  ~capture_pool() {
    if (p_) {
      pool_->close(p_);
    }
  }
  void end_capture() { pool_->end_capture(); }

 private:
  device_pool* pool_;
  private_pool* p_;
};

}  // namespace detail

/// Statistics of a device's caching pool.
inline memory_stats memory_usage(device d) { return detail::pool_of(d).stats(); }

/// Starts a new peak measurement for a device.
inline void reset_peak_memory(device d) { detail::pool_of(d).reset_peak(); }

/// Returns a device's cached (free) blocks to the system.
inline void empty_cache(device d) { detail::pool_of(d).empty(); }

}  // namespace dp::inline DP_ABI
