// The communicator concept: the collectives dp::parallel is written against. The local communicator
// (threads of one process, host memory), MPI (processes, host memory), NCCL (GPUs, one process or
// many) and the hierarchical one (ranks x local replicas) implement the same operations, so the
// parallel logic is written once and tested on the CPU in CI; dist::any_communicator erases it once.
//
// Every collective is called by all ranks in the same order. Sums are taken in rank order, so a
// result never depends on timing. A collective that waits past the timeout, or that another rank
// aborted, throws dp::runtime_error on every rank that waits in it.
#pragma once

#include <chrono>
#include <concepts>
#include <cstdint>
#include <optional>
#include <string>
#include <type_traits>

#include <dp/core/device.hpp>
#include <dp/core/error.hpp>
#include <dp/core/tensor.hpp>

namespace dp::inline DP_ABI::dist {

enum class reduce_op : std::uint8_t { sum, mean, max, min };

/// Options shared by communicators.
struct communicator_options {
  /// A collective that waits longer than this for another rank fails with dp::runtime_error naming
  /// the collective, instead of hanging forever. Making an MPI communicator (a parallel across
  /// ranks, a sharded loader) is such a collective too: ranks must reach it within this of each other.
  std::chrono::milliseconds timeout{std::chrono::minutes(5)};
};

/// The longest timeout a communicator takes (a year): deadlines are steady_clock times counted in
/// nanoseconds, which milliseconds::max() would overflow into the past (an instant timeout).
inline constexpr std::chrono::milliseconds max_timeout{std::chrono::hours(24 * 365)};

namespace detail {
/// Refuses a timeout outside (0, max_timeout], naming who was given it.
inline void check_timeout(const communicator_options& o, const char* who) {
  DP_CHECK(o.timeout.count() > 0 && o.timeout <= max_timeout, value_error, "dp: ", who, ": the timeout is ",
           o.timeout.count(), " ms; expected more than 0 and at most dp::dist::max_timeout (", max_timeout.count(),
           " ms, a year)");
}
}  // namespace detail

/// The most bytes a communicator's request may take: requests are plain values that an erased
/// communicator carries inline, so a step that overlaps its buckets allocates nothing.
inline constexpr std::size_t max_request_bytes = 64;

namespace detail {
/// What the calling thread's collectives are for, so that an error can say it: dp::parallel sets
/// "gradients" and the step, a communicator's message then reads "all_reduce of step 3's gradients".
struct collective_context {
  const char* what = nullptr;
  std::uint64_t step = 0;
};
inline thread_local collective_context current_context;

/// Sets the calling thread's context for a scope.
class context_scope {
 public:
  context_scope(const char* what, std::uint64_t step) : saved_(current_context) { current_context = {what, step}; }
  context_scope(const context_scope&) = delete;
  context_scope& operator=(const context_scope&) = delete;
  ~context_scope() { current_context = saved_; }

 private:
  collective_context saved_;
};

/// " of step 3's gradients" (" of the model check" at step 0), or nothing outside a context.
inline std::string context_text() {
  const collective_context c = current_context;
  if (c.what == nullptr) {
    return {};
  }
  return c.step == 0 ? dp::detail::concat(" of the ", c.what) : dp::detail::concat(" of step ", c.step, "'s ", c.what);
}

/// A collective's call as the rules below see it: its name, the number of ranks, the communicator
/// (for messages), and where its tensors must be: host memory (local, MPI: any cpu device), one GPU
/// (NCCL: that cuda device), or anywhere (hierarchical: its parts check their own).
struct call {
  const char* what;
  int ranks;
  const char* communicator;
  std::optional<device> home;
};

/// The argument rules every communicator applies, written once so that every backend refuses the
/// same calls with the same words (and none hands a library a strided or misplaced buffer).
template <class T>
void check_buffer(const call& c, const tensor<T>& t) {
  if (!c.home) {
    return;
  }
  const bool placed = t.defined() && (c.home->is_cpu() ? t.device().is_cpu() : t.device() == *c.home);
  DP_CHECK(placed && t.is_contiguous(), value_error, "dp: ", c.what, " on the ", c.communicator,
           " communicator needs a contiguous tensor in ", c.home->is_cpu() ? "host memory" : c.home->str(), ", got ",
           !t.defined()
               ? std::string("an undefined tensor")
               : dp::detail::concat(t.is_contiguous() ? "a contiguous" : "a strided", " tensor on ", t.device()));
}
template <class T>
void check_broadcast(const call& c, const tensor<T>& t, int root) {
  check_buffer(c, t);
  DP_CHECK(root >= 0 && root < c.ranks, value_error, "dp: broadcast: root ", root, " is not a rank of ", c.ranks);
}
template <class T>
void check_all_gather(const call& c, const tensor<T>& in, const tensor<T>& out) {
  check_buffer(c, in);
  check_buffer(c, out);
  DP_CHECK(out.numel() == in.numel() * c.ranks, shape_error, "dp: all_gather: the output has ", out.numel(),
           " elements, expected ", c.ranks, " x ", in.numel());
}
template <class T>
void check_reduce_scatter(const call& c, const tensor<T>& in, const tensor<T>& out) {
  check_buffer(c, in);
  check_buffer(c, out);
  DP_CHECK(in.numel() == out.numel() * c.ranks, shape_error, "dp: reduce_scatter: the input has ", in.numel(),
           " elements, expected ", c.ranks, " x ", out.numel());
}
template <class T>
void check_all_to_all(const call& c, const tensor<T>& in, const tensor<T>& out) {
  check_buffer(c, in);
  check_buffer(c, out);
  DP_CHECK(in.numel() == out.numel() && in.numel() % c.ranks == 0, shape_error, "dp: all_to_all: the input has ",
           in.numel(), " and the output ", out.numel(), " elements; both must be ", c.ranks, " equal blocks");
}
/// A mean from the sum over `ranks`: integers divide (as the local communicator and NCCL's average
/// do), where times 1/ranks would be 0.
template <class T>
void mean_from_sum(tensor<T>& t, int ranks) {
  if constexpr (std::is_integral_v<T>) {
    t /= static_cast<T>(ranks);
  } else {
    t *= T(1) / static_cast<T>(ranks);
  }
}
template <class T>
void check_start_all_reduce(const call& c, const tensor<T>& t, reduce_op op) {
  check_buffer(c, t);
  DP_CHECK(op != reduce_op::mean, value_error, "dp: start_all_reduce takes sum, max or min (divide afterwards)");
}
}  // namespace detail

// clang-format off
template <class C>
concept communicator =
    std::is_trivially_copyable_v<typename C::request> && sizeof(typename C::request) <= max_request_bytes &&
    requires(C& c, const C& cc, tensor<float>& t, tensor<double>& d, const tensor<float>& in, int root,
             typename C::request& q, const std::string& why) {
  { cc.rank() } -> std::convertible_to<int>;
  { cc.size() } -> std::convertible_to<int>;
  { cc.name() } -> std::convertible_to<std::string>;
  c.all_reduce(t, reduce_op::sum);       // in place, the same result on every rank
  c.broadcast(t, root);                  // root's values to every rank
  c.all_gather(in, t);                   // t = concatenation of every rank's `in` (equal sizes)
  c.reduce_scatter(in, t, reduce_op::sum);  // t = rank r's chunk of the reduction of every `in`
  c.all_to_all(in, t);                   // t's block q = rank q's `in` block r (size() equal blocks)
  c.barrier();
  // Non-blocking: start a sum, max or min all-reduce in place (t untouched until it completes), then
  // test (true once done) or wait (with the timeout). An implementation may complete it at start.
  { c.start_all_reduce(t, reduce_op::sum) } -> std::same_as<typename C::request>;
  { c.start_all_reduce(d, reduce_op::sum) } -> std::same_as<typename C::request>;
  { c.test(q) } -> std::same_as<bool>;
  c.wait(q);
  c.abort(why);   // fail every collective another rank waits in (or enters) with `why`
  c.recover();    // after a failure every rank has left: the next collectives start clean (if they can)
};
// clang-format on

}  // namespace dp::inline DP_ABI::dist
