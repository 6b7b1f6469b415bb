// The deterministic mode's sums (parallel_options::deterministic): the batch is cut into fixed
// chunks of positions (parallel_options::chunk samples each), every chunk's gradients, mean-policy
// buffers and loss are computed on their own, and the chunks are summed exactly, so the result
// cannot depend on which replica or rank computed which chunk, nor on the order of the sums.
//
// Exact: each segment (a parameter tensor, a buffer, the loss) gets one fixed-point scale from the
// largest magnitude any chunk produced in it (a max all-reduce, itself exact), chosen so that the
// sum of every chunk fits in 63 bits; values are truncated onto that grid (a function of the value
// and the scale alone), summed as int64 (associative, so any order and any all-reduce algorithm
// gives the same bits) and converted back once. Each segment's sum is exact to 2^-58 or so of its
// largest value; smaller values keep fewer bits, the same on every device count.
#pragma once

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include <dp/core/factory.hpp>
#include <dp/core/tensor.hpp>
#include <dp/dist/any_communicator.hpp>
#include <dp/dist/buffer_sync.hpp>
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
  void clear() noexcept { kept_ = 0; }

  /// Keeps one chunk: its gradients, its mean buffers times `weight` (its share of the batch; none
  /// outside training, where forward leaves them alone), its loss share.
  void keep(const tensor<T>& grads, replica_buffers* buffers, double weight, double loss) {
    if (kept_ == static_cast<int>(chunks_.size())) {  // the store grows to the most chunks seen, once
      chunks_.push_back(empty<double>({total_}));
    }
    double* out = chunks_[static_cast<std::size_t>(kept_)].data();
    const tensor<T> host = on_host(grads);
    const T* g = host.data();
    for (index_t e = 0; e < params_; ++e) {
      out[e] = static_cast<double>(g[e]);
    }
    const index_t at = params_;
    std::fill(out + at, out + total_ - 1, 0.0);
    if (buffers != nullptr) {
      index_t b = at;
      buffers->for_each_mean([&](auto& t) {
        const auto v = on_host(t);
        const auto* p = v.data();  // buffers are whole, contiguous tensors
        for (index_t e = 0; e < v.numel(); ++e) {
          out[b + e] = weight * static_cast<double>(p[e]);
        }
        b += t.numel();
      });
    }
    out[total_ - 1] = loss;
    ++kept_;
  }

  /// Sums every chunk of every replica and rank (two all-reduces on `comm`, which every replica
  /// joins, also one without chunks); `chunks` is the number of chunks in the whole batch. Then
  /// writes the sums: the gradients into `grads`, the mean buffers, and returns the loss.
  double reduce(any_communicator& comm, int chunks, tensor<T> grads, replica_buffers* buffers) {
    double* m = maxima_.data();
    for (int s = 0; s < segments(); ++s) {
      double big = 0;
      for (int k = 0; k < kept_; ++k) {
        const double* c = chunks_[static_cast<std::size_t>(k)].data();
        for (index_t e = starts_[static_cast<std::size_t>(s)]; e < starts_[static_cast<std::size_t>(s) + 1]; ++e) {
          big = std::max(big, std::fabs(c[e]));  // NaN is dropped here ...
          if (std::isnan(c[e])) {
            big = std::numeric_limits<double>::infinity();  // ... and marks the segment instead
          }
        }
      }
      m[s] = big;
    }
    comm.all_reduce(maxima_, reduce_op::max);
    // The headroom for summing `chunks` terms: ceil(log2(chunks)) bits.
    const int headroom = static_cast<int>(std::bit_width(static_cast<unsigned>(std::max(1, chunks - 1))));
    std::int64_t* acc = acc_.data();
    std::fill(acc, acc + total_, std::int64_t{0});
    scales_.resize(static_cast<std::size_t>(segments()));
    for (int s = 0; s < segments(); ++s) {
      const double big = m[s];
      const bool finite = std::isfinite(big) && big > 0;
      // |x| < 2^(ilogb(big) + 1), so |x| 2^scale < 2^(62 - headroom) and the sum stays below 2^62.
      const int scale = finite ? 61 - std::ilogb(big) - headroom : 0;
      scales_[static_cast<std::size_t>(s)] = scale;
      if (!finite) {
        continue;
      }
      const double up = std::ldexp(1.0, scale);  // a power of two: multiplying by it is exact
      for (int k = 0; k < kept_; ++k) {
        const double* c = chunks_[static_cast<std::size_t>(k)].data();
        for (index_t e = starts_[static_cast<std::size_t>(s)]; e < starts_[static_cast<std::size_t>(s) + 1]; ++e) {
          acc[e] += static_cast<std::int64_t>(c[e] * up);
        }
      }
    }
    comm.all_reduce(acc_, reduce_op::sum);
    auto value = [&](int s, index_t e) {
      const double big = m[s];
      if (!(big >= 0) || std::isinf(big)) {
        return std::numeric_limits<double>::quiet_NaN();  // a NaN or infinity somewhere: the sum is not a number
      }
      return std::ldexp(static_cast<double>(acc[e]), -scales_[static_cast<std::size_t>(s)]);
    };
    int s = 0;
    write(grads, [&](T* g) {
      for (; s < segments() && starts_[static_cast<std::size_t>(s)] < params_; ++s) {
        for (index_t e = starts_[static_cast<std::size_t>(s)]; e < starts_[static_cast<std::size_t>(s) + 1]; ++e) {
          g[e] = static_cast<T>(value(s, e));
        }
      }
    });
    if (buffers != nullptr) {
      buffers->for_each_mean([&](auto& t) {
        using V = typename std::remove_cvref_t<decltype(t)>::value_type;
        write(t, [&](V* p) {
          const index_t b = starts_[static_cast<std::size_t>(s)];
          for (index_t e = 0; e < t.numel(); ++e) {
            p[e] = static_cast<V>(value(s, b + e));
          }
        });
        ++s;
      });
    }
    return value(segments() - 1, total_ - 1);
  }

 private:
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
  std::vector<index_t> starts_;  // segment s is elements [starts_[s], starts_[s + 1])
  std::vector<int> scales_;
  std::vector<tensor<double>> chunks_;
  int kept_ = 0;
  tensor<double> maxima_;
  tensor<std::int64_t> acc_;
};

}  // namespace dp::inline DP_ABI::dist::detail
