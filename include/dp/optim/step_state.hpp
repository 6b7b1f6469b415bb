// An optimizer's step count and the scalars derived from it (learning rate, bias corrections, the
// first-step flag), kept in memory on each replica's device and advanced there by the step itself.
// The update pass reads them from that memory, so a step captured in a CUDA graph replays as the next
// step (its schedule and bias corrections move on) rather than repeating the captured one.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include <dp/core/replica_access.hpp>
#include <dp/core/tensor.hpp>
#include <dp/exec/factory.hpp>
#include <dp/exec/for_each.hpp>

namespace dp::inline DP_ABI::optim::detail {

/// Per-replica buffers an optimizer owns (its state, its step count). A copy of the optimizer gets
/// copies of them: tensors share storage when copied, and two optimizers stepping one buffer
/// would each apply the other's updates. Assignment, copy or move, writes the values into the buffers
/// it has where they are alike: a step captured in a CUDA graph goes on updating that memory, and a
/// move that took the other's buffers would leave the graph writing memory already freed.
template <class T>
class replica_buffers : public std::vector<tensor<T>> {
  using base = std::vector<tensor<T>>;

 public:
  replica_buffers() = default;
  replica_buffers(base v) : base(std::move(v)) {}  // NOLINT(google-explicit-constructor): state_like's result
  replica_buffers(const replica_buffers& o) : base(clones(o)) {}
  replica_buffers(replica_buffers&&) noexcept = default;
  replica_buffers& operator=(const replica_buffers& o) {
    if (this != &o && !assign_in_place(o)) {
      base::operator=(clones(o));  // every copy made before the first is replaced
    }
    return *this;
  }
  replica_buffers& operator=(replica_buffers&& o) {  // NOLINT(performance-noexcept-move-constructor): copies
    if (this != &o && !assign_in_place(o)) {
      base::operator=(std::move(o));
    }
    return *this;
  }
  ~replica_buffers() = default;

 private:
  /// Writes o's values into these buffers when they have o's layout; false (nothing written) if not.
  bool assign_in_place(const base& o) {
    if (o.size() != this->size()) {
      return false;
    }
    for (std::size_t i = 0; i < o.size(); ++i) {
      if (o[i].shape() != (*this)[i].shape() || o[i].device() != (*this)[i].device()) {
        return false;
      }
    }
    for (std::size_t i = 0; i < o.size(); ++i) {
      tensor<T>((*this)[i]) = o[i];
    }
    return true;
  }
  static base clones(const base& v) {
    base out;
    out.reserve(v.size());
    for (const auto& t : v) {
      out.push_back(t.clone());
    }
    return out;
  }
};

/// scalars[0] counts the steps taken; the optimizer's advance function sets the others.
inline constexpr index_t step_scalar_count = 4;

template <class Advance>
struct advance_scalars {
  double* s;
  Advance advance;
  DP_HOST_DEVICE void operator()(index_t) const {
    advance(s);
    s[0] += 1;
  }
};

class step_state {
 public:
  step_state() = default;
  explicit step_state(const std::vector<device>& devices) {
    for (const device d : devices) {
      s_.push_back(zeros<double>({step_scalar_count}, d));
    }
  }

  /// One pass of one element on the replica's device: `advance(double* scalars)` sets the scalars
  /// of the step about to be taken from scalars[0] (the steps before it), which then counts it.
  template <class Advance>
  void advance(std::size_t replica, const Advance& a) {
    dp::detail::for_each_index(s_[replica].device(), 1, advance_scalars<Advance>{s_[replica].data(), a});
  }
  const double* scalars(std::size_t replica) const { return s_[replica].data(); }

  /// Steps taken (read from the device: the count moves on in replays the host never sees).
  std::int64_t steps() const { return static_cast<std::int64_t>(s_[0].slice(0, 0, 1).item()); }
  void set_steps(std::int64_t n) {
    for (auto& s : s_) {
      s.slice(0, 0, 1).fill(static_cast<double>(n));
    }
  }

 private:
  replica_buffers<double> s_;
};

/// The devices of an owner's replicas, in replica order.
template <class O>
std::vector<device> replica_devices(O& owner) {
  std::vector<device> out(owner.replica_count());
  dp::detail::replica_access::for_each_replica(
      owner, [&](std::size_t i, const auto& params, const auto&) { out[i] = params.device(); });
  return out;
}

}  // namespace dp::inline DP_ABI::optim::detail
