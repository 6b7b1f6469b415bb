// The deterministic mode's sums (parallel_options::deterministic): the batch is cut into fixed
// chunks of positions (parallel_options::chunk samples each), every chunk's gradients, mean-policy
// buffers and loss are computed on their own, and the chunks are summed exactly, so the result
// cannot depend on which replica or rank computed which chunk, nor on the order of the sums.
//
// Exact: each segment (a parameter tensor, a buffer, the loss) gets one fixed-point scale from the
// largest magnitude any chunk produced in it (a max all-reduce, itself exact), chosen so that the
// sum of every chunk stays below 2^50; values are rounded onto that grid (a function of the value
// and the scale alone), summed as int64 (associative, so any order and any all-reduce algorithm
// gives the same bits) and converted back once. Each segment's sum is exact to about 2^-46 of its
// largest value (8 chunks); smaller values keep fewer bits, the same on every device count. Below
// 2^51 a double converts to and from int64 by adding 1.5 x 2^52 (exact, and vectorised by the
// compiler, where a cast is not without AVX-512).
#pragma once

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include <dp/core/tensor.hpp>
#include <dp/dist/any_communicator.hpp>
#include <dp/dist/buffer_sync.hpp>
#include <dp/exec/factory.hpp>
#include <dp/nn/trainer.hpp>

namespace dp::inline DP_ABI::dist::detail {

template <class T>
class exact_chunks {
 public:
  /// Segments: the parameters of `layout` (flat gradients of `params` elements), then the mean
  /// buffers of `buffers`, then the loss.
  exact_chunks(const std::vector<nn::param_entry>& layout, index_t params, replica_buffers& buffers) : params_(params) {
    starts_.push_back(0);
    for (const auto& e : layout) {
      starts_.push_back(e.offset);
    }
    std::sort(starts_.begin(), starts_.end());
    starts_.erase(std::unique(starts_.begin(), starts_.end()), starts_.end());
    if (starts_.back() == params) {  // no parameters at all: no empty segment
      starts_.pop_back();
    }
    grad_segments_ = static_cast<int>(starts_.size());
    index_t extra = 0;
    buffers.for_each_mean([&](auto& t) {
      starts_.push_back(params + extra);
      extra += t.numel();
    });
    starts_.push_back(params + extra);  // the loss
    total_ = params + extra + 1;
    starts_.push_back(total_);
    maxima_ = zeros<double>({segments()});
    acc_ = zeros<std::int64_t>({total_});
  }

  int segments() const noexcept { return static_cast<int>(starts_.size()) - 1; }

  /// Forgets the chunks of the last step.
  void clear() {
    kept_ = 0;
    last_ = tensor<T>();
    std::fill(maxima_.data(), maxima_.data() + segments(), 0.0);
  }

  /// Keeps one chunk: its gradients, its mean buffers times `weight` (its share of the batch; none
  /// outside training, where forward leaves them alone), its loss share. The gradients of a
  /// replica's last chunk stay where they are (nothing overwrites them before reduce); the others
  /// are copied.
  void keep(const tensor<T>& grads, replica_buffers* buffers, double weight, double loss, bool last) {
    if (kept_ == static_cast<int>(extras_.size())) {  // the stores grow to the most chunks seen, once
      extras_.push_back(empty<double>({total_ - params_}));
      copies_.push_back(tensor<T>());
    }
    const auto k = static_cast<std::size_t>(kept_);
    const tensor<T> host = on_host(grads);
    if (last) {
      last_ = host;  // a handle on the flat gradients (or their host copy)
      observe<T>(host.data(), nullptr, 0, grad_segments_);
    } else {
      if (!copies_[k].defined()) {
        copies_[k] = empty<T>({params_});
      }
      observe(host.data(), copies_[k].data(), 0, grad_segments_);
    }
    double* out = extras_[k].data();
    std::fill(out, out + (total_ - params_), 0.0);
    if (buffers != nullptr) {
      index_t b = 0;
      buffers->for_each_mean([&](auto& t) {
        const auto v = on_host(t);
        const auto* p = v.data();  // buffers are whole, contiguous tensors
        for (index_t e = 0; e < v.numel(); ++e) {
          out[b + e] = weight * static_cast<double>(p[e]);
        }
        b += v.numel();
      });
    }
    out[total_ - params_ - 1] = loss;
    observe<double>(out - params_, nullptr, grad_segments_, segments());
    ++kept_;
  }

  /// Sums every chunk of every replica and rank (two all-reduces on `comm`, which every replica
  /// joins, also one without chunks); `chunks` is the number of chunks in the whole batch. Then
  /// writes the sums: the gradients into `grads`, the mean buffers, and returns the loss.
  double reduce(any_communicator& comm, int chunks, tensor<T> grads, replica_buffers* buffers) {
    comm.all_reduce(maxima_, reduce_op::max);
    const double* m = maxima_.data();
    // The headroom for summing `chunks` terms: ceil(log2(chunks)) bits.
    const int headroom = static_cast<int>(std::bit_width(static_cast<unsigned>(std::max(1, chunks - 1))));
    std::int64_t* acc = acc_.data();
    std::fill(acc, acc + total_, std::int64_t{0});
    scales_.resize(static_cast<std::size_t>(segments()));
    for (int s = 0; s < segments(); ++s) {
      const double big = m[s];
      const bool finite = std::isfinite(big) && big > 0;
      // |x| < 2^(ilogb(big) + 1), so |x| 2^scale < 2^(50 - headroom) and the sum stays below 2^50.
      const int scale = finite ? 49 - std::ilogb(big) - headroom : 0;
      scales_[static_cast<std::size_t>(s)] = scale;
      if (!finite) {
        continue;
      }
      const double up = std::ldexp(1.0, scale);  // a power of two: multiplying by it is exact
      const index_t lo = starts_[static_cast<std::size_t>(s)], hi = starts_[static_cast<std::size_t>(s) + 1];
      if (s < grad_segments_) {
        add_all(acc, lo, hi, up, [&](int k) { return gradients(k, last_.defined() && k == kept_ - 1).data(); });
      } else {
        add_all(acc, lo, hi, up, [&](int k) { return extras_[static_cast<std::size_t>(k)].data() - params_; });
      }
    }
    last_ = tensor<T>();
    comm.all_reduce(acc_, reduce_op::sum);
    // Segment s's sums into out[0, ...): a NaN or infinity somewhere makes them all NaN.
    auto read = [&](int s, auto* out) {
      using V = std::remove_cvref_t<decltype(*out)>;
      const index_t lo = starts_[static_cast<std::size_t>(s)], hi = starts_[static_cast<std::size_t>(s) + 1];
      const bool nan = std::isinf(m[s]);
      const double down = std::ldexp(1.0, -scales_[static_cast<std::size_t>(s)]);
      for (index_t e = lo; e < hi; ++e) {
        out[e - lo] = nan ? std::numeric_limits<V>::quiet_NaN() : static_cast<V>(from_grid(acc[e]) * down);
      }
    };
    write(grads, [&](T* g) {
      for (int s = 0; s < grad_segments_; ++s) {
        read(s, g + starts_[static_cast<std::size_t>(s)]);
      }
    });
    if (buffers != nullptr) {
      int s = grad_segments_;
      buffers->for_each_mean([&](auto& t) {
        using V = typename std::remove_cvref_t<decltype(t)>::value_type;
        write(t, [&](V* p) { read(s, p); });
        ++s;
      });
    }
    double loss = 0;
    read(segments() - 1, &loss);
    return loss;
  }

 private:
  /// acc[e] = the sum over kept chunks of chunk(k)[e] on the grid `up`, for e in [lo, hi): one pass
  /// over acc, the chunks read side by side.
  template <class Chunk>
  void add_all(std::int64_t* acc, index_t lo, index_t hi, double up, Chunk chunk) const {
    constexpr int group = 8;
    for (int k0 = 0; k0 < kept_; k0 += group) {
      const int n = std::min(group, kept_ - k0);
      std::remove_cvref_t<decltype(chunk(0))> c[group];
      for (int j = 0; j < n; ++j) {
        c[j] = chunk(k0 + j);
      }
      for (index_t e = lo; e < hi; ++e) {
        std::int64_t sum = acc[e];
        for (int j = 0; j < n; ++j) {
          sum += to_grid(static_cast<double>(c[j][e]) * up);
        }
        acc[e] = sum;
      }
    }
  }

  const tensor<T>& gradients(int k, bool last) const { return last ? last_ : copies_[static_cast<std::size_t>(k)]; }

  /// Raises the maxima of segments [first, last) by the magnitudes at x (x[e] is element e), copying
  /// them to `copy` on the way when given; a NaN or infinity makes a segment's maximum infinite,
  /// which reduce turns into NaN sums.
  template <class V>
  void observe(const V* x, V* copy, int first, int last) {
    double* m = maxima_.data();
    constexpr int lanes = 16;  // independent lanes, so that the compiler vectorises the loop
    for (int s = first; s < last; ++s) {
      V big[lanes] = {}, poison[lanes] = {};
      const index_t lo = starts_[static_cast<std::size_t>(s)], hi = starts_[static_cast<std::size_t>(s) + 1];
      if (copy != nullptr) {  // the copy in the same pass: the values are read once
        std::copy(x + lo, x + hi, copy + lo);
      }
      index_t e = lo;
      for (; e + lanes <= hi; e += lanes) {
        for (int j = 0; j < lanes; ++j) {
          const V a = std::fabs(x[e + j]);
          big[j] = a > big[j] ? a : big[j];
          poison[j] += a * V(0);  // stays 0 unless some value is NaN or infinite
        }
      }
      for (; e < hi; ++e) {
        const V a = std::fabs(x[e]);
        big[0] = a > big[0] ? a : big[0];
        poison[0] += a * V(0);
      }
      double most = m[s];
      bool odd = false;
      for (int j = 0; j < lanes; ++j) {
        most = std::max(most, static_cast<double>(big[j]));
        odd |= poison[j] != V(0);
      }
      m[s] = odd ? std::numeric_limits<double>::infinity() : most;
    }
  }

  // Doubles of magnitude below 2^51 to and from int64, exactly (rounding to the nearest integer).
  static constexpr double magic = 6755399441055744.0;  // 1.5 x 2^52
  static std::int64_t to_grid(double v) {
    return std::bit_cast<std::int64_t>(v + magic) - std::bit_cast<std::int64_t>(magic);
  }
  static double from_grid(std::int64_t i) {
    return std::bit_cast<double>(i + std::bit_cast<std::int64_t>(magic)) - magic;
  }

  // On a GPU the sums run on the host: the chunks are copied there, the results back (the mode's
  // guarantee first; its speed on GPUs is not measured yet).
  template <class V>
  static tensor<V> on_host(const tensor<V>& t) {
    return t.device().is_cpu() ? t : t.to(cpu());
  }
  /// Calls fill(pointer) on t's elements, through a host copy when t is on a GPU.
  template <class V, class F>
  static void write(tensor<V>& t, F&& fill) {
    if (t.device().is_cpu()) {
      fill(t.data());
      return;
    }
    tensor<V> host = empty<V>(t.shape());
    fill(host.data());
    t.assign(host.to(t.device()));
  }

  index_t params_ = 0, total_ = 0;
  int grad_segments_ = 0;
  std::vector<index_t> starts_;  // segment s is elements [starts_[s], starts_[s + 1])
  std::vector<int> scales_;
  std::vector<tensor<T>> copies_;       // chunk k's gradients, but for the last one's ...
  tensor<T> last_;                      // ... which stay in the flat buffer (a handle)
  std::vector<tensor<double>> extras_;  // chunk k's weighted mean buffers, then its loss
  int kept_ = 0;
  tensor<double> maxima_;
  tensor<std::int64_t> acc_;
};

}  // namespace dp::inline DP_ABI::dist::detail
