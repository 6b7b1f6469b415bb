// Float GEMMs of small and medium shapes through oneDNN (libdnnl), when dp is built with it
// (DP_HAS_ONEDNN=1: CMake sets it when oneDNN is found; DP_WITH_ONEDNN=OFF leaves it out).
//
// Why oneDNN and where (benchmarks/RESULTS.md, "GEMM by shape", one thread): on the shapes of small
// MLPs it takes 65-80% of OpenBLAS's time, the transposed-B products of every linear layer's
// forward included, which LIBXSMM's JIT kernels cannot take without a copy; on large shapes it is
// as fast or faster. A call costs it about 0.2 us more than OpenBLAS, which loses on products with
// a side under 16 or under 2^17 multiply-adds: those stay with OpenBLAS. Double stays with OpenBLAS
// (oneDNN has no dgemm). Each product shape is a matmul primitive, made once per thread.
#pragma once

#include <algorithm>
#include <atomic>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string_view>
#include <vector>

#include <dp/config.hpp>
#include <dp/core/error.hpp>

#if DP_HAS_ONEDNN
#include <dlfcn.h>
#include <oneapi/dnnl/dnnl.h>
#endif

namespace dp::inline DP_ABI::detail {

/// Whether oneDNN computes an m x n x k float product, when dp has it (the rule measured above).
constexpr bool onednn_takes(index_t m, index_t n, index_t k) {
  return std::min({m, n, k}) >= 16 && m * n * k >= (index_t{1} << 17);
}

/// DP_ONEDNN's value at start: unset or empty is on; "1" on, "0" off (GEMMs through OpenBLAS only).
inline bool onednn_env(const char* v) {
  const std::string_view s = v == nullptr ? "" : v;
  DP_CHECK(s.empty() || s == "0" || s == "1", value_error,
           "dp: the environment variable DP_ONEDNN must be 0 (every GEMM through OpenBLAS) or 1 (oneDNN for the "
           "float shapes it is faster on, the default), got '",
           s, "'");
  return s != "0";
}
/// The process's switch (dp::use_onednn), read from DP_ONEDNN on first use.
inline std::atomic<bool>& onednn_switch() {
  static std::atomic<bool> on{onednn_env(std::getenv("DP_ONEDNN"))};
  return on;
}

#if DP_HAS_ONEDNN
inline constexpr bool has_onednn = true;

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

/// The CPU engine of every oneDNN primitive dp makes: created on first use and kept to the end of the
/// process (the primitives of threads that exit late still refer to it); null if oneDNN has none.
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

/// One product shape as a oneDNN matmul primitive, with memory objects that each call points at its
/// operands. Why a primitive and not dnnl_sgemm: dnnl_sgemm generates its whole family of JIT
/// kernels on a process's first NN or TN call (30-45 ms measured on the AMD VM, about 21 on the
/// Intel one), more than the digits job's training; a matmul primitive generates the few it needs,
/// 0.15-0.3 ms per shape, and runs as fast (benchmarks/RESULTS.md, "oneDNN's matmul primitive").
/// The scratchpad is the caller's (user mode): that is what makes a primitive safe to run on any
/// thread, not only the one that made it.
class onednn_gemm {
 public:
  explicit onednn_gemm(const onednn_gemm_key& key) : key_(key) {
    const dnnl_engine_t engine = onednn_engine();
    if (engine == nullptr) {
      return;
    }
    const auto stored = [](index_t rows, index_t cols, index_t ld, bool trans, dnnl_memory_desc_t& md) {
      const dnnl_dims_t dims{rows, cols}, strides{trans ? 1 : ld, trans ? ld : 1};
      return dnnl_memory_desc_init_by_strides(&md, 2, dims, dnnl_f32, strides) == dnnl_success;
    };
    dnnl_memory_desc_t a_md, b_md, c_md;
    dnnl_matmul_desc_t op;
    if (!stored(key.m, key.k, key.lda, key.ta, a_md) || !stored(key.k, key.n, key.ldb, key.tb, b_md) ||
        !stored(key.m, key.n, key.ldc, false, c_md) ||
        dnnl_matmul_desc_init(&op, &a_md, &b_md, nullptr, &c_md) != dnnl_success) {
      return;
    }
    dnnl_primitive_attr_t attr = nullptr;
    if (dnnl_primitive_attr_create(&attr) != dnnl_success) {
      return;
    }
    dnnl_primitive_desc_t pd = nullptr;
    if (configure(attr) && dnnl_primitive_desc_create(&pd, &op, attr, engine, nullptr) == dnnl_success) {
      const dnnl_memory_desc_t* scratch_md = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
      scratch_bytes_ = scratch_md == nullptr ? 0 : dnnl_memory_desc_get_size(scratch_md);
      const bool made =
          dnnl_primitive_create(&prim_, pd) == dnnl_success &&
          dnnl_memory_create(&a_, &a_md, engine, DNNL_MEMORY_NONE) == dnnl_success &&
          dnnl_memory_create(&b_, &b_md, engine, DNNL_MEMORY_NONE) == dnnl_success &&
          dnnl_memory_create(&c_, &c_md, engine, DNNL_MEMORY_NONE) == dnnl_success &&
          (scratch_bytes_ == 0 || dnnl_memory_create(&scratch_, scratch_md, engine, DNNL_MEMORY_NONE) == dnnl_success);
      if (!made) {
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
  bool ok() const noexcept { return prim_ != nullptr; }
  std::size_t scratch_bytes() const noexcept { return scratch_bytes_; }

  /// C = alpha op(A) op(B) + beta C on the calling thread; `scratch` holds scratch_bytes().
  bool run(const float* a, const float* b, float* c, void* scratch, dnnl_stream_t stream) const {
    // oneDNN reads the sources only; its memory objects take non-const handles.
    if (dnnl_memory_set_data_handle(a_, const_cast<float*>(a)) != dnnl_success ||
        dnnl_memory_set_data_handle(b_, const_cast<float*>(b)) != dnnl_success ||
        dnnl_memory_set_data_handle(c_, c) != dnnl_success ||
        (scratch_ != nullptr && dnnl_memory_set_data_handle(scratch_, scratch) != dnnl_success)) {
      return false;
    }
    const dnnl_exec_arg_t args[]{
        {DNNL_ARG_SRC, a_}, {DNNL_ARG_WEIGHTS, b_}, {DNNL_ARG_DST, c_}, {DNNL_ARG_SCRATCHPAD, scratch_}};
    return dnnl_primitive_execute(prim_, stream, scratch_ != nullptr ? 4 : 3, args) == dnnl_success &&
           dnnl_stream_wait(stream) == dnnl_success;
  }

 private:
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
  /// More shapes than this (a program that varies its batch without end) start the list again.
  static constexpr std::size_t max_shapes = 64;

  onednn_thread_gemms() = default;
  onednn_thread_gemms(const onednn_thread_gemms&) = delete;
  onednn_thread_gemms& operator=(const onednn_thread_gemms&) = delete;
  ~onednn_thread_gemms() {
    gemms_.clear();
    if (stream_ != nullptr) {
      dnnl_stream_destroy(stream_);
    }
  }

  bool run(const onednn_gemm_key& key, const float* a, const float* b, float* c) {
    if (stream_ == nullptr &&
        (onednn_engine() == nullptr ||
         dnnl_stream_create(&stream_, onednn_engine(), dnnl_stream_default_flags) != dnnl_success)) {
      stream_ = nullptr;
      return false;
    }
    const onednn_gemm& g = find(key);
    if (!g.ok()) {
      return false;  // oneDNN refused the shape once: BLAS takes it from now on, without a retry
    }
    if (g.scratch_bytes() > scratch_bytes_) {
      scratch_bytes_ = (g.scratch_bytes() + 63) / 64 * 64;
      scratch_.reset(static_cast<std::byte*>(std::aligned_alloc(64, scratch_bytes_)));
      if (!scratch_) {
        scratch_bytes_ = 0;
        return false;
      }
    }
    return g.run(a, b, c, scratch_.get(), stream_);
  }

 private:
  const onednn_gemm& find(const onednn_gemm_key& key) {
    for (const auto& g : gemms_) {
      if (g->key() == key) {
        return *g;
      }
    }
    if (gemms_.size() == max_shapes) {
      gemms_.clear();
    }
    return *gemms_.emplace_back(std::make_unique<onednn_gemm>(key));
  }
  struct free_bytes {
    void operator()(std::byte* p) const noexcept { std::free(p); }
  };

  std::vector<std::unique_ptr<onednn_gemm>> gemms_;
  dnnl_stream_t stream_ = nullptr;
  std::unique_ptr<std::byte, free_bytes> scratch_;
  std::size_t scratch_bytes_ = 0;
};

/// C = alpha op(A) op(B) + beta C, all row-major, through oneDNN on the calling thread; false when
/// oneDNN refused (the caller then uses BLAS: the result is the same product).
inline bool onednn_sgemm(bool ta, bool tb, index_t m, index_t n, index_t k, float alpha, const float* a, index_t lda,
                         const float* b, index_t ldb, float beta, float* c, index_t ldc) {
  thread_local onednn_thread_gemms gemms;
  const onednn_one_thread one;  // primitives are made for, and run on, one thread
  return gemms.run(
      {m, n, k, lda, ldb, ldc, ta, tb, std::bit_cast<std::uint32_t>(alpha), std::bit_cast<std::uint32_t>(beta)}, a, b,
      c);
}
#else
inline constexpr bool has_onednn = false;
#endif

}  // namespace dp::inline DP_ABI::detail

namespace dp::inline DP_ABI {

/// Whether float GEMMs of the shapes oneDNN is faster on go to oneDNN (dp built with it, and not
/// switched off by use_onednn(false) or DP_ONEDNN=0).
inline bool onednn_enabled() { return detail::has_onednn && detail::onednn_switch().load(std::memory_order_relaxed); }

/// Switches the oneDNN path on or off for the process (no effect in a build without oneDNN). The two
/// libraries round differently, so switch before training, not during it: with it off, every GEMM
/// goes to OpenBLAS (to compare with a build without oneDNN, or to leave oneDNN's start-up of about
/// 1 ms and 0.1-0.3 ms per new product shape out of a very short job).
inline void use_onednn(bool on) { detail::onednn_switch().store(on, std::memory_order_relaxed); }

}  // namespace dp::inline DP_ABI
