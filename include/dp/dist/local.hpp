// The local communicator: ranks are threads of one process working on host memory (dp::parallel's
// host workers). Collectives rendezvous at a barrier, then every rank reduces its own chunk of the
// data, reading the other ranks' buffers directly: no copies beyond the result, sums in rank order.
// A rank that fails aborts the group, so the others stop with an error instead of waiting.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#if defined(__linux__)
#include <ctime>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

#include <dp/core/error.hpp>
#include <dp/core/tensor.hpp>
#include <dp/core/type_tag.hpp>
#include <dp/dist/communicator.hpp>
#include <dp/exec/spin.hpp>
#include <dp/exec/thread_pool.hpp>

namespace dp::inline DP_ABI::dist {

namespace detail {
/// What a rank passes to a collective besides its buffer. Every rank compares every rank's with
/// rank 0's: a rank that read another's buffer as its own element type or count would read or write
/// past it, and ranks reducing by different ops or naming different roots would mix results.
struct posted_call {
  void* data = nullptr;
  index_t count = 0;
  const void* type = nullptr;  // the elements' dp::detail::type_tag (std::byte for broadcast_bytes)
  const char* type_name = "";
  int op = -1;    // a reduce_op, or -1 where the collective takes none
  int root = -1;  // broadcast's, or -1
};

template <class T>
constexpr const char* element_name() {
  if constexpr (std::is_same_v<T, float>) {
    return "float";
  } else if constexpr (std::is_same_v<T, double>) {
    return "double";
  } else if constexpr (std::is_same_v<T, std::int64_t>) {
    return "int64";
  } else {
    return "other-typed";
  }
}

template <class T>
posted_call post_of(T* data, index_t count, int op = -1, int root = -1) {
  using U = std::remove_const_t<T>;  // const or not, the same elements
  return {.data = const_cast<U*>(data),
          .count = count,
          .type = &dp::detail::type_tag<U>,
          .type_name = element_name<U>(),
          .op = op,
          .root = root};
}

inline const char* op_name(int op) {
  constexpr const char* names[] = {"sum", "mean", "max", "min"};
  return op >= 0 && op < 4 ? names[op] : "none";
}

/// Sleeps while *word == expected, for at most `ns` nanoseconds (a futex on Linux, else a yield).
inline void wait_for_change(std::atomic<unsigned>& word, unsigned expected, long ns) {
#if defined(__linux__)
  timespec ts{ns / 1000000000L, ns % 1000000000L};
  static_assert(sizeof(std::atomic<unsigned>) == sizeof(unsigned));
  ::syscall(SYS_futex, reinterpret_cast<unsigned*>(&word), FUTEX_WAIT_PRIVATE, expected, &ts, nullptr, 0);
#else
  (void)word;
  (void)expected;
  (void)ns;
  std::this_thread::yield();
#endif
}

template <class T>
T combine(T a, T b, reduce_op op) {
  switch (op) {  // a NaN on any rank wins, whatever the rank order (max(NaN, 1) gave 1)
    case reduce_op::max:
      return a > b || a != a ? a : b;
    case reduce_op::min:
      return a < b || a != a ? a : b;
    default:
      return static_cast<T>(a + b);
  }
}

/// Elements [lo, hi) of n ranks' buffers (`buf(r)` is rank r's T*) combined in rank order, the
/// result written to every buffer: one rank's share of a local all-reduce, and one task of
/// dp::parallel's sum over its host replicas (the same sums, so the same bits either way).
template <class Buffer>
void combine_into_all(Buffer&& buf, int n, index_t lo, index_t hi, reduce_op op) {
  using T = std::remove_pointer_t<decltype(buf(0))>;
  constexpr index_t block = 1024;
  T acc[block];
  for (index_t b = lo; b < hi; b += block) {
    const index_t e = std::min(hi, b + block);
    const T* first = buf(0);
    for (index_t i = b; i < e; ++i) {
      acc[i - b] = first[i];
    }
    for (int r = 1; r < n; ++r) {
      const T* src = buf(r);
      for (index_t i = b; i < e; ++i) {
        acc[i - b] = combine(acc[i - b], src[i], op);
      }
    }
    if (op == reduce_op::mean) {
      for (index_t i = b; i < e; ++i) {
        acc[i - b] = static_cast<T>(acc[i - b] / static_cast<T>(n));
      }
    }
    for (int r = 0; r < n; ++r) {
      std::memcpy(buf(r) + b, acc, static_cast<std::size_t>(e - b) * sizeof(T));
    }
  }
}
}  // namespace detail

/// State shared by the ranks of one local group.
class local_group {
 public:
  explicit local_group(int size, communicator_options o = {})
      : size_(checked_size(size)),
        opts_(o),
        posted_(static_cast<std::size_t>(size)),
        arrived_(static_cast<std::size_t>(size)) {
    detail::check_timeout(o, "local communicator");
    // Spinning only pays when every rank has a core; with more ranks than cores it starves the
    // rank everyone waits for, so then waiters sleep at once.
    const auto spin = size <= static_cast<int>(std::max(1u, std::thread::hardware_concurrency()))
                          ? dp::detail::spin_budget
                          : std::chrono::nanoseconds(0);
    spins_.assign(static_cast<std::size_t>(size), dp::detail::adaptive_spin(spin));
  }
  local_group(const local_group&) = delete;
  local_group& operator=(const local_group&) = delete;

  int size() const noexcept { return size_; }

  /// Waits for every rank (sense-reversing barrier; spins briefly, then sleeps). A barrier ends
  /// one way for every rank: completed, or failed (an abort or a timeout before the last rank came).
  void arrive(const char* collective, int rank) {
    const unsigned gen = generation_.load(std::memory_order_acquire);
    check_abort(collective);
    arrived_[static_cast<std::size_t>(rank)].store(gen + 1, std::memory_order_relaxed);
    if (arriving_.fetch_add(1, std::memory_order_acq_rel) + 1 == size_) {
      bool completed = false;
      {
        // Under the lock: a timeout that fails this barrier and its completion exclude each other.
        std::lock_guard lock(m_);
        if (!aborted_.load(std::memory_order_relaxed)) {
          arriving_.store(0, std::memory_order_relaxed);
          generation_.fetch_add(1, std::memory_order_acq_rel);
          completed = true;
        }
      }
      wake_all();
      if (!completed) {
        check_abort(collective);
      }
      return;
    }
    const auto deadline = std::chrono::steady_clock::now() + opts_.timeout;
    spins_[static_cast<std::size_t>(rank)].wait(
        [&] { return generation_.load(std::memory_order_acquire) != gen; },  // an abort moves it too
        [&] {
          detail::wait_for_change(generation_, gen, 10'000'000);  // 10 ms slices: timeouts stay responsive
          if (std::chrono::steady_clock::now() > deadline) {
            time_out(collective, rank, gen);
          }
        });
    // Failed only by an abort of this barrier: one after it completed is the next collective's.
    if (aborted_.load(std::memory_order_acquire) && aborted_at_.load(std::memory_order_relaxed) == gen) {
      check_abort(collective);
    }
  }

  /// Marks the group failed: every rank waiting in (or entering) a collective throws `why`.
  void abort(const std::string& why) {
    std::lock_guard lock(m_);
    abort_locked(why);
  }
  bool aborted() const noexcept { return aborted_.load(std::memory_order_acquire); }
  /// Clears a failure once every rank has left its collective (the next step starts clean).
  void reset() {
    std::lock_guard lock(m_);
    aborted_ = false;
    arriving_ = 0;
    why_.clear();
  }

  void post(int rank, const detail::posted_call& c) { posted_[static_cast<std::size_t>(rank)] = c; }
  void* posted(int rank) const { return posted_[static_cast<std::size_t>(rank)].data; }
  const detail::posted_call& call(int rank) const { return posted_[static_cast<std::size_t>(rank)]; }

 private:
  /// Checked before the vectors are sized by it (-1 made them std::length_error).
  static int checked_size(int size) {
    DP_CHECK(size >= 1, value_error, "dp: a local group needs at least one rank, got ", size);
    return size;
  }
  void wake_all() {
#if defined(__linux__)
    ::syscall(SYS_futex, reinterpret_cast<unsigned*>(&generation_), FUTEX_WAKE_PRIVATE, INT32_MAX, nullptr, nullptr, 0);
#endif
  }
  void abort_locked(const std::string& why) {
    if (!aborted_.load()) {
      why_ = why;
      aborted_at_.store(generation_.load(), std::memory_order_relaxed);
      aborted_.store(true, std::memory_order_release);
      generation_.fetch_add(1);
      wake_all();
    }
  }
  /// A waiter's deadline passed: fails the barrier, naming the ranks that have not reached it,
  /// unless it completed meanwhile or its last rank is completing it.
  void time_out(const char* collective, int rank, unsigned gen) {
    std::lock_guard lock(m_);
    if (generation_.load(std::memory_order_acquire) != gen) {
      return;
    }
    std::string missing;
    for (int r = 0; r < size_; ++r) {
      if (arrived_[static_cast<std::size_t>(r)].load(std::memory_order_relaxed) != gen + 1) {
        missing += dp::detail::concat(missing.empty() ? "" : ", ", r);
      }
    }
    if (missing.empty()) {
      return;  // the last rank came as the deadline passed: it completes the barrier in a moment
    }
    abort_locked(dp::detail::concat("dp: ", collective, detail::context_text(), " timed out on rank ", rank, " of ",
                                    size_, " after ", opts_.timeout.count(), " ms. missing: rank(s) ", missing,
                                    " (not in this collective: still working, stalled or failed)"));
  }
  void check_abort(const char* collective) {
    if (aborted_.load(std::memory_order_acquire)) {
      std::lock_guard lock(m_);
      throw runtime_error(dp::detail::concat("dp: ", collective, " aborted: ", why_));
    }
  }

  int size_;
  std::vector<dp::detail::adaptive_spin> spins_;  // each rank's
  communicator_options opts_;
  std::vector<detail::posted_call> posted_;
  std::vector<std::atomic<unsigned>> arrived_;  // each rank's last barrier: its generation + 1
  std::atomic<int> arriving_{0};
  std::atomic<unsigned> generation_{0};
  std::atomic<bool> aborted_{false};
  std::atomic<unsigned> aborted_at_{0};  // the generation the abort failed
  std::mutex m_;
  std::string why_;
};

/// One rank's handle on a local group.
class local_communicator {
 public:
  local_communicator(std::shared_ptr<local_group> g, int rank) : g_(std::move(g)), rank_(rank) {}

  int rank() const noexcept { return rank_; }
  int size() const noexcept { return g_->size(); }
  std::string name() const { return "local communicator"; }
  local_group& group() noexcept { return *g_; }

  void barrier() { g_->arrive("barrier", rank_); }
  /// Fails the group: every rank waiting in (or entering) a collective throws `why`.
  void abort(const std::string& why) { g_->abort(why); }
  /// Clears a failure once every rank has left its collective.
  void recover() { g_->reset(); }

  /// The ranks are threads that rendezvous: a started all-reduce is complete when start returns.
  struct request {
    bool done = true;
  };
  template <class T>
  request start_all_reduce(tensor<T>& t, reduce_op op) {
    detail::check_start_all_reduce(call_of("all_reduce"), t, op);
    all_reduce(t, op);
    return {};
  }
  static bool test(request& q) noexcept { return q.done; }
  static void wait(request&) noexcept {}

  /// Copies `bytes` bytes at `p` from `root` to every rank (the hierarchical communicator's hand-back).
  void broadcast_bytes(void* p, std::size_t bytes, int root) {
    broadcast_posted(detail::post_of(static_cast<std::byte*>(p), static_cast<index_t>(bytes), -1, root), bytes);
  }

  template <class T>
  void all_reduce(tensor<T>& t, reduce_op op) {
    detail::check_buffer(call_of("all_reduce"), t);
    const int n = size();
    if (n == 1) {
      return;
    }
    g_->post(rank_, detail::post_of(t.data(), t.numel(), static_cast<int>(op)));
    g_->arrive("all_reduce", rank_);
    require_same_call("all_reduce", "elements");
    const index_t total = g_->call(0).count;
    // My chunk: read every rank's values in rank order, then write the result to every rank.
    detail::combine_into_all([&](int r) { return static_cast<T*>(g_->posted(r)); }, n, total * rank_ / n,
                             total * (rank_ + 1) / n, op);
    g_->arrive("all_reduce", rank_);
  }

  template <class T>
  void broadcast(tensor<T>& t, int root) {
    detail::check_broadcast(call_of("broadcast"), t, root);
    const std::size_t bytes = static_cast<std::size_t>(t.numel()) * sizeof(T);
    broadcast_posted(detail::post_of(t.data(), static_cast<index_t>(bytes), -1, root), bytes);
  }

  template <class T>
  void all_gather(const tensor<T>& in, tensor<T>& out) {
    detail::check_all_gather(call_of("all_gather"), in, out);
    g_->post(rank_, detail::post_of(in.data(), in.numel()));
    g_->arrive("all_gather", rank_);
    require_same_call("all_gather", "elements");
    for (int r = 0; r < size(); ++r) {
      std::memcpy(out.data() + r * in.numel(), g_->posted(r), static_cast<std::size_t>(in.numel()) * sizeof(T));
    }
    g_->arrive("all_gather", rank_);
  }

  template <class T>
  void reduce_scatter(const tensor<T>& in, tensor<T>& out, reduce_op op) {
    detail::check_reduce_scatter(call_of("reduce_scatter"), in, out);
    const int n = size();
    g_->post(rank_, detail::post_of(in.data(), in.numel(), static_cast<int>(op)));
    g_->arrive("reduce_scatter", rank_);
    require_same_call("reduce_scatter", "elements");  // a rank with more would read past the others'
    const index_t c = out.numel(), off = c * rank_;
    T* dst = out.data();
    for (index_t i = 0; i < c; ++i) {
      T acc = static_cast<const T*>(g_->posted(0))[off + i];
      for (int r = 1; r < n; ++r) {
        acc = detail::combine(acc, static_cast<const T*>(g_->posted(r))[off + i], op);
      }
      dst[i] = op == reduce_op::mean ? static_cast<T>(acc / static_cast<T>(n)) : acc;
    }
    g_->arrive("reduce_scatter", rank_);
  }

  template <class T>
  void all_to_all(const tensor<T>& in, tensor<T>& out) {
    detail::check_all_to_all(call_of("all_to_all"), in, out);
    const int n = size();
    g_->post(rank_, detail::post_of(in.data(), in.numel()));
    g_->arrive("all_to_all", rank_);
    require_same_call("all_to_all", "elements");
    const index_t c = in.numel() / n;
    for (int r = 0; r < n; ++r) {
      std::memcpy(out.data() + r * c, static_cast<const T*>(g_->posted(r)) + rank_ * c,
                  static_cast<std::size_t>(c) * sizeof(T));
    }
    g_->arrive("all_to_all", rank_);
  }

 private:
  /// Posts `c` (its count in bytes) and copies `bytes` bytes from the root's buffer to every other rank's.
  void broadcast_posted(const detail::posted_call& c, std::size_t bytes) {
    if (size() == 1) {
      return;
    }
    g_->post(rank_, c);
    g_->arrive("broadcast", rank_);
    require_same_call("broadcast", "bytes");
    if (rank_ != c.root) {
      std::memcpy(c.data, g_->posted(c.root), bytes);
    }
    g_->arrive("broadcast", rank_);
  }
  /// Every rank checks every rank's call (count, element type, op, root) after posting, so that all
  /// refuse together. A refusal still meets the others at the closing rendezvous: a rank that left
  /// early could post its next call's buffer and count while a slower one still read these.
  void require_same_call(const char* what, const char* unit) {
    const detail::posted_call& first = g_->call(0);
    for (int r = 1; r < size(); ++r) {
      const detail::posted_call& c = g_->call(r);
      if (c.type != first.type) {
        refuse(dp::detail::concat("dp: ", what, ": rank ", r, " passed ", c.type_name, " elements but rank 0 passed ",
                                  first.type_name, "; every rank passes the same element type"));
      }
      if (c.count != first.count) {
        refuse(dp::detail::concat("dp: ", what, ": rank ", r, " passed ", c.count, " ", unit, " but rank 0 passed ",
                                  first.count, "; every rank passes the same size"));
      }
      if (c.op != first.op) {
        refuse(dp::detail::concat("dp: ", what, ": rank ", r, " reduces by ", detail::op_name(c.op), " but rank 0 by ",
                                  detail::op_name(first.op), "; every rank passes the same op"));
      }
      if (c.root != first.root) {
        refuse(dp::detail::concat("dp: ", what, ": rank ", r, " names root ", c.root, " but rank 0 names root ",
                                  first.root, "; every rank names the same root"));
      }
    }
  }
  [[noreturn]] void refuse(std::string why) {
    try {
      g_->arrive("a refused collective", rank_);
    } catch (const dp::error&) {  // the group failed too (sticky until recover): the size is this call's error
    }
    throw value_error(std::move(why));
  }
  detail::call call_of(const char* what) const { return {what, size(), "local", dp::cpu()}; }

  std::shared_ptr<local_group> g_;
  int rank_;
};

static_assert(communicator<local_communicator>);

/// A group of `size` local ranks and their communicators.
inline std::vector<local_communicator> make_local_communicators(int size, communicator_options o = {}) {
  auto g = std::make_shared<local_group>(size, o);
  std::vector<local_communicator> out;
  for (int r = 0; r < size; ++r) {
    out.emplace_back(g, r);
  }
  return out;
}

}  // namespace dp::inline DP_ABI::dist
