// How dp calls oneDNN (exec/onednn.hpp says when): each product shape is a oneDNN matmul primitive,
// made on first use by each thread that runs it and kept. Only with DP_HAS_ONEDNN.
//
// Why a primitive and not dnnl_sgemm: dnnl_sgemm generates its whole family of JIT kernels on a
// process's first NN or TN call (30-45 ms measured on the AMD VM, about 21 on the Intel one), more
// than the digits job's training; a matmul primitive generates the few it needs (about 1 ms for
// the first, 0.15-0.3 ms for each new small shape) and runs as fast, on these shapes to the same
// bits (benchmarks/RESULTS.md, "oneDNN's matmul primitive instead of dnnl_sgemm").
#pragma once

#include <atomic>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <dlfcn.h>
#include <memory>
#include <mutex>
#include <oneapi/dnnl/dnnl.h>
#include <string_view>
#include <utility>
#include <vector>

#include <dp/config.hpp>
#include <dp/core/error.hpp>

namespace dp::inline DP_ABI::detail {

/// oneDNN threads with OpenMP; dp splits GEMMs over its own pool, so each call runs on its caller:
/// the caller's OpenMP thread count is 1 for the call and restored after (a program's own OpenMP
/// regions keep theirs). Found at run time: a oneDNN built on another threading runtime has none.
class onednn_one_thread {
 public:
  onednn_one_thread() {
    const auto& f = fns();
    if (f.get && f.set) {
      saved_ = f.get();
      if (saved_ != 1) {
        f.set(1);
      }
    }
  }
  ~onednn_one_thread() {
    if (saved_ > 1) {
      fns().set(saved_);
    }
  }
  onednn_one_thread(const onednn_one_thread&) = delete;
  onednn_one_thread& operator=(const onednn_one_thread&) = delete;

 private:
  struct omp_fns {
    int (*get)() = nullptr;
    void (*set)(int) = nullptr;
  };
  static const omp_fns& fns() {
    static const omp_fns f{reinterpret_cast<int (*)()>(dlsym(RTLD_DEFAULT, "omp_get_max_threads")),
                           reinterpret_cast<void (*)(int)>(dlsym(RTLD_DEFAULT, "omp_set_num_threads"))};
    return f;
  }
  int saved_ = 1;
};

/// Set once the process has begun to exit: threads that end after that (the pool's workers, joined
/// by its static destructor) leave their primitives to the OS, because oneDNN's own statics (its
/// primitive cache, its JIT allocator) may already be gone.
inline std::atomic<bool>& onednn_exiting() {
  static std::atomic<bool> exiting{false};
  return exiting;
}
/// Registers the handler that sets onednn_exiting(), once, when the first primitive has been made:
/// oneDNN's statics exist by then, and handlers run before the destructors of statics made earlier.
inline void onednn_watch_exit() {
  static const bool registered = [] { return std::atexit([] { onednn_exiting().store(true); }) == 0; }();
  (void)registered;
}

/// The CPU engine of every primitive dp makes: created on first use and kept to the end of the
/// process; null if oneDNN has none.
inline dnnl_engine_t onednn_engine() {
  static const dnnl_engine_t engine = [] {
    dnnl_engine_t e = nullptr;
    return dnnl_engine_create(&e, dnnl_cpu, 0) == dnnl_success ? e : nullptr;
  }();
  return engine;
}

/// What one product's primitive is made for: its shape, storage and the constants built into it.
struct onednn_gemm_key {
  index_t m, n, k, lda, ldb, ldc;
  bool ta, tb;
  std::uint32_t alpha, beta;  // the bits, so that a NaN constant still finds its primitive
  bool operator==(const onednn_gemm_key&) const = default;
};

/// One product shape as a matmul primitive, with memory objects that each call points at its
/// operands. The scratchpad is the caller's (oneDNN's user mode), so that one buffer per thread
/// serves all of its shapes.
class onednn_gemm {
 public:
  explicit onednn_gemm(const onednn_gemm_key& key) : key_(key) {
    const dnnl_engine_t engine = onednn_engine();
    dnnl_memory_desc_t a_md, b_md, c_md;
    dnnl_matmul_desc_t op;
    dnnl_primitive_attr_t attr = nullptr;
    if (engine == nullptr || !stored(key.m, key.k, key.lda, key.ta, a_md) ||
        !stored(key.k, key.n, key.ldb, key.tb, b_md) || !stored(key.m, key.n, key.ldc, false, c_md) ||
        dnnl_matmul_desc_init(&op, &a_md, &b_md, nullptr, &c_md) != dnnl_success ||
        dnnl_primitive_attr_create(&attr) != dnnl_success) {
      return;
    }
    dnnl_primitive_desc_t pd = nullptr;
    if (configure(attr) && dnnl_primitive_desc_create(&pd, &op, attr, engine, nullptr) == dnnl_success) {
      const dnnl_memory_desc_t* scratch_md = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
      scratch_bytes_ = scratch_md == nullptr ? 0 : dnnl_memory_desc_get_size(scratch_md);
      const bool made =
          fast(pd) && dnnl_primitive_create(&prim_, pd) == dnnl_success &&
          dnnl_memory_create(&a_, &a_md, engine, DNNL_MEMORY_NONE) == dnnl_success &&
          dnnl_memory_create(&b_, &b_md, engine, DNNL_MEMORY_NONE) == dnnl_success &&
          dnnl_memory_create(&c_, &c_md, engine, DNNL_MEMORY_NONE) == dnnl_success &&
          (scratch_bytes_ == 0 || dnnl_memory_create(&scratch_, scratch_md, engine, DNNL_MEMORY_NONE) == dnnl_success);
      if (made) {
        onednn_watch_exit();
      } else {
        release();
      }
      dnnl_primitive_desc_destroy(pd);
    }
    dnnl_primitive_attr_destroy(attr);
  }
  ~onednn_gemm() { release(); }
  onednn_gemm(const onednn_gemm&) = delete;
  onednn_gemm& operator=(const onednn_gemm&) = delete;

  const onednn_gemm_key& key() const noexcept { return key_; }
  /// Whether oneDNN made it: false leaves the shape to BLAS.
  bool ok() const noexcept { return prim_ != nullptr; }
  std::size_t scratch_bytes() const noexcept { return scratch_bytes_; }

  /// C = alpha op(A) op(B) + beta C on the calling thread; `scratch` holds scratch_bytes(). False,
  /// with C untouched, when the operands could not be bound; once the primitive has run, a failure
  /// is an error (C may be half written: BLAS must not add its product again).
  bool run(const float* a, const float* b, float* c, void* scratch, dnnl_stream_t stream) {
    // oneDNN reads the sources only; its memory objects take non-const handles.
    if (dnnl_memory_set_data_handle(a_, const_cast<float*>(a)) != dnnl_success ||
        dnnl_memory_set_data_handle(b_, const_cast<float*>(b)) != dnnl_success ||
        dnnl_memory_set_data_handle(c_, c) != dnnl_success ||
        (scratch_ != nullptr && dnnl_memory_set_data_handle(scratch_, scratch) != dnnl_success)) {
      return false;
    }
    const dnnl_exec_arg_t args[]{
        {DNNL_ARG_SRC, a_}, {DNNL_ARG_WEIGHTS, b_}, {DNNL_ARG_DST, c_}, {DNNL_ARG_SCRATCHPAD, scratch_}};
    const dnnl_status_t ran = dnnl_primitive_execute(prim_, stream, scratch_ != nullptr ? 4 : 3, args);
    const dnnl_status_t waited = ran == dnnl_success ? dnnl_stream_wait(stream) : ran;
    DP_CHECK(waited == dnnl_success, device_error, "dp: oneDNN's matmul of ", key_.m, "x", key_.k, " by ", key_.k, "x",
             key_.n, " failed with status ", int(waited));
    return true;
  }

 private:
  /// A row-major matrix of rows x cols with leading dimension ld, or its transpose's storage.
  static bool stored(index_t rows, index_t cols, index_t ld, bool trans, dnnl_memory_desc_t& md) {
    const dnnl_dims_t dims{rows, cols}, strides{trans ? 1 : ld, trans ? ld : 1};
    return dnnl_memory_desc_init_by_strides(&md, 2, dims, dnnl_f32, strides) == dnnl_success;
  }
  /// oneDNN's reference implementation takes what its fast ones refuse, at a fraction of their
  /// speed: such a shape is better left to BLAS.
  static bool fast(const_dnnl_primitive_desc_t pd) {
    const char* impl = nullptr;
    return dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl) == dnnl_success && impl != nullptr &&
           !std::string_view(impl).starts_with("ref");
  }
  /// The user scratchpad, alpha as the output scale and beta as an accumulating sum.
  bool configure(dnnl_primitive_attr_t attr) const {
    const float alpha = std::bit_cast<float>(key_.alpha), beta = std::bit_cast<float>(key_.beta);
    if (dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user) != dnnl_success ||
        (alpha != 1.f && dnnl_primitive_attr_set_output_scales(attr, 1, 0, &alpha) != dnnl_success)) {
      return false;
    }
    if (beta == 0.f) {  // BLAS's rule: C is not read (a NaN in it does not survive)
      return true;
    }
    dnnl_post_ops_t post = nullptr;
    if (dnnl_post_ops_create(&post) != dnnl_success) {
      return false;
    }
    const bool set = dnnl_post_ops_append_sum(post, beta) == dnnl_success &&
                     dnnl_primitive_attr_set_post_ops(attr, post) == dnnl_success;
    dnnl_post_ops_destroy(post);
    return set;
  }
  void release() noexcept {
    for (dnnl_memory_t* m : {&a_, &b_, &c_, &scratch_}) {
      if (*m != nullptr) {
        dnnl_memory_destroy(*m);
        *m = nullptr;
      }
    }
    if (prim_ != nullptr) {
      dnnl_primitive_destroy(prim_);
      prim_ = nullptr;
    }
  }

  onednn_gemm_key key_;
  dnnl_primitive_t prim_ = nullptr;
  dnnl_memory_t a_ = nullptr, b_ = nullptr, c_ = nullptr, scratch_ = nullptr;
  std::size_t scratch_bytes_ = 0;
};

/// A thread's primitives, stream and scratchpad: nothing is shared between threads, so host workers
/// run their products side by side without a lock (oneDNN's own primitive cache makes a second
/// thread's primitive for a shape cheap: its kernels are generated once per process).
class onednn_thread_gemms {
 public:
  /// The shapes a thread keeps; a new one past that replaces the least recently moved forward.
  static constexpr std::size_t max_shapes = 64;

  onednn_thread_gemms() = default;
  onednn_thread_gemms(const onednn_thread_gemms&) = delete;
  onednn_thread_gemms& operator=(const onednn_thread_gemms&) = delete;
  ~onednn_thread_gemms() {
    if (onednn_exiting().load()) {  // oneDNN may be gone: keep everything, reachable, for the OS
      left_at_exit& left = left_at_exit::instance();
      const std::lock_guard lock(left.m);
      for (auto& g : gemms_) {
        left.gemms.push_back(std::move(g));
      }
      left.blocks.push_back(scratch_.release());
      left.blocks.push_back(stream_);
      return;
    }
    gemms_.clear();
    if (stream_ != nullptr) {
      dnnl_stream_destroy(stream_);
    }
  }

  /// C = alpha op(A) op(B) + beta C through oneDNN; false (C untouched) when oneDNN refuses.
  bool run(const onednn_gemm_key& key, const float* a, const float* b, float* c) {
    if (stream_ == nullptr &&
        (onednn_engine() == nullptr ||
         dnnl_stream_create(&stream_, onednn_engine(), dnnl_stream_default_flags) != dnnl_success)) {
      stream_ = nullptr;
      return false;
    }
    onednn_gemm& g = find(key);
    if (!g.ok()) {
      return false;  // oneDNN refused the shape once: BLAS takes it from now on, without a retry
    }
    if (g.scratch_bytes() > scratch_bytes_) {
      const std::size_t bytes = (g.scratch_bytes() + 63) / 64 * 64;
      scratch_.reset(static_cast<std::byte*>(std::aligned_alloc(64, bytes)));
      scratch_bytes_ = scratch_ ? bytes : 0;
      if (!scratch_) {
        return false;
      }
    }
    return g.run(a, b, c, scratch_.get(), stream_);
  }

 private:
  /// The key's primitive, made if new; a found one moves a place forward, so that the shapes of a
  /// steady step gather at the front and a new shape past max_shapes replaces a rarely used one.
  onednn_gemm& find(const onednn_gemm_key& key) {
    for (std::size_t i = 0; i < gemms_.size(); ++i) {
      if (gemms_[i]->key() == key) {
        if (i == 0) {
          return *gemms_[0];
        }
        std::swap(gemms_[i - 1], gemms_[i]);
        return *gemms_[i - 1];
      }
    }
    auto made = std::make_unique<onednn_gemm>(key);
    if (gemms_.size() == max_shapes) {
      gemms_.back() = std::move(made);
    } else {
      gemms_.push_back(std::move(made));
    }
    return *gemms_.back();
  }
  struct free_bytes {
    void operator()(std::byte* p) const noexcept { std::free(p); }
  };
  /// What threads that end after exit began leave behind: never destroyed, and reachable from a
  /// static, so that leak checkers do not report it.
  struct left_at_exit {
    std::mutex m;
    std::vector<std::unique_ptr<onednn_gemm>> gemms;
    std::vector<void*> blocks;
    static left_at_exit& instance() {
      static auto* const left = new left_at_exit;
      return *left;
    }
  };

  std::vector<std::unique_ptr<onednn_gemm>> gemms_;
  dnnl_stream_t stream_ = nullptr;
  std::unique_ptr<std::byte, free_bytes> scratch_;
  std::size_t scratch_bytes_ = 0;
};

/// C = alpha op(A) op(B) + beta C, all row-major, through oneDNN on the calling thread; false (C
/// untouched) when oneDNN refused, and the caller then uses BLAS: the same product.
inline bool onednn_sgemm(bool ta, bool tb, index_t m, index_t n, index_t k, float alpha, const float* a, index_t lda,
                         const float* b, index_t ldb, float beta, float* c, index_t ldc) {
  if (alpha == 0.f) {  // BLAS's rule: A and B are not read (an infinity in them does not become NaN)
    return false;
  }
  thread_local onednn_thread_gemms gemms;
  const onednn_one_thread one;  // primitives are made for, and run on, one thread
  return gemms.run(
      {m, n, k, lda, ldb, ldc, ta, tb, std::bit_cast<std::uint32_t>(alpha), std::bit_cast<std::uint32_t>(beta)}, a, b,
      c);
}

}  // namespace dp::inline DP_ABI::detail
