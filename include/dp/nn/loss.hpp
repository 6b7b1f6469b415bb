// Losses. cross_entropy is one fused operation (log-softmax and the negative log-likelihood per row,
// with label smoothing and ignored targets, and a one-pass backward); mse_loss is plain forward code.
#pragma once

#include <atomic>
#include <cstdint>
#include <limits>
#include <memory>

#include <dp/exec/for_each.hpp>
#include <dp/exec/reduce.hpp>
#include <dp/expr/math.hpp>
#include <dp/expr/operators.hpp>
#include <dp/nn/autograd/ops.hpp>

namespace dp::inline DP_ABI::nn {

/// How a loss combines its per-sample values. dp::parallel uses it to weight replicas: a mean is
/// taken over all samples of the global batch, not as a mean of per-device means.
enum class reduction : std::uint8_t { mean, sum };

namespace detail {

template <class T>
struct ce_rows {
  const T* x;
  const std::int64_t* y;
  T* loss;
  T* lse;
  T* weight;
  index_t classes;
  float smoothing;
  std::int64_t ignore;
  index_t rows;
  std::int64_t* bad;  // rows - (the first invalid row); 0: none

  DP_HOST_DEVICE void operator()(index_t i) const {
    const std::int64_t label = y[i];
    if (label == ignore) {
      loss[i] = T(0);
      lse[i] = T(0);
      weight[i] = T(0);
      return;
    }
    if (label < 0 || label >= classes) {  // flagged, and the loss made NaN so a GPU step is stopped
      dp::detail::store_max(bad, rows - i);
      loss[i] = std::numeric_limits<T>::quiet_NaN();
      lse[i] = T(0);
      weight[i] = T(0);
      return;
    }
    const T* row = x + i * classes;
    T m = row[0];
    for (index_t j = 1; j < classes; ++j) {
      m = row[j] > m ? row[j] : m;
    }
    T s = T(0), total = T(0);
    for (index_t j = 0; j < classes; ++j) {
      s += dp::detail::math::exp(row[j] - m);
      total += row[j];
    }
    const T l = m + dp::detail::math::log(s);
    const T eps = static_cast<T>(smoothing);
    loss[i] = (T(1) - eps) * (l - row[label]) + eps * (l - total / T(classes));
    lse[i] = l;
    weight[i] = T(1);
  }
};

/// dlogits for one row: g * w_i / denom * (softmax - target distribution).
template <class T>
struct ce_grad {
  const T* x;
  const std::int64_t* y;
  const T* lse;
  const T* weight;
  const T* gout;   // the loss's gradient (0-d)
  const T* denom;  // sum of weights (mean) or 1 (sum)
  T* dx;
  index_t classes;
  float smoothing;
  bool accumulate;

  DP_HOST_DEVICE void operator()(index_t i) const {
    const T* row = x + i * classes;
    T* out = dx + i * classes;
    const T eps = static_cast<T>(smoothing);
    const T scale = weight[i] != T(0) ? *gout * weight[i] / *denom : T(0);
    const T l = lse[i], base = eps / T(classes);
    const std::int64_t label = y[i];
    for (index_t j = 0; j < classes; ++j) {
      const T p = dp::detail::math::exp(row[j] - l);
      const T target = base + (j == label ? T(1) - eps : T(0));
      const T g = scale * (p - target);
      out[j] = accumulate ? out[j] + g : g;
    }
  }
};

/// Scratch and the forward computation shared by the eager and the traced cross entropy.
template <class T>
struct ce_state {
  tensor<T> loss_rows, lse, weight, denom, total;
  tensor<std::int64_t> bad;

  void ensure(index_t n, dp::device d) {
    if (!loss_rows.defined() || loss_rows.shape()[0] != n || loss_rows.device() != d) {
      loss_rows = empty<T>({n}, d);
      lse = empty<T>({n}, d);
      weight = empty<T>({n}, d);
      denom = empty<T>({}, d);
      total = empty<T>({}, d);
      bad = zeros<std::int64_t>({}, d);
    }
  }

  /// Writes the loss into `out` (0-d). `first_row` is the batch row of logits' row 0 (a replica's
  /// shard starts inside the batch), so an error names the row of the batch the caller passed.
  void run(const tensor<T>& logits, const tensor<std::int64_t>& target, const tensor<T>& out, float smoothing,
           reduction red, std::int64_t ignore, index_t first_row = 0) {
    const index_t n = logits.shape()[0], c = logits.shape()[1];
    ensure(n, logits.device());
    dp::detail::for_each_index(logits.device(), n,
                               ce_rows<T>{logits.data(), target.data(), loss_rows.data(), lse.data(), weight.data(), c,
                                          smoothing, ignore, n, bad.data()},
                               std::max<index_t>(1, 4096 / std::max<index_t>(c, 1)));
    if (logits.device().is_cpu()) {
      check(target, c, ignore, first_row);
    }
    dp::detail::reduce_into<dp::detail::sum_reduce>(total, dp::detail::tensor_node<T>{loss_rows},
                                                    dp::detail::eager_ctx{}, false);
    if (red == reduction::mean) {
      dp::detail::reduce_into<dp::detail::sum_reduce>(denom, dp::detail::tensor_node<T>{weight},
                                                      dp::detail::eager_ctx{}, false);
      tensor<T>(out).assign(total / denom);
    } else {
      denom.fill(T(1));
      tensor<T>(out).assign(total);
    }
  }

  /// Throws if the last run flagged a target outside [0, classes) (and clears the flag). On a GPU
  /// this reads the flag back, so it waits for the device.
  void check(const tensor<std::int64_t>& target, index_t classes, std::int64_t ignore, index_t first_row) {
    const std::int64_t b = bad.device().is_cpu() ? *bad.data() : bad.item();
    if (b != 0) {
      bad.fill(0);
      const index_t row = loss_rows.shape()[0] - b;
      const std::int64_t value = target.device().is_cpu() ? target.data()[row] : target.slice(0, row, row + 1).item();
      throw value_error(dp::detail::concat("dp: cross_entropy: the target of row ", first_row + row, " is ", value,
                                           ", outside [0, ", classes, ") (ignore_index is ", ignore, ")"));
    }
  }
};

template <class T>
struct cross_entropy_op final : op {
  int logits, target;  // target: an int64 slot
  int out;
  float smoothing;
  reduction red;
  std::int64_t ignore;
  ce_state<T> st;
  grad_target<T> t;

  const char* name() const override { return "cross_entropy"; }
  void forward(graph& g) override {
    st.run(g.value<T>(logits), g.value<std::int64_t>(target), g.value<T>(out), smoothing, red, ignore, g.sample_offset);
  }
  void check_flags(graph& g) override {
    st.check(g.value<std::int64_t>(target), g.value<T>(logits).shape()[1], ignore, g.sample_offset);
  }
  void plan(graph& g) override {
    if (g.receives_grad<T>(out)) {
      t = g.slot_target<T>(logits);
    }
  }
  void backward(graph& g) override {
    if (!t.active) {
      return;
    }
    const tensor<T>& x = g.value<T>(logits);
    const index_t c = x.shape()[1];
    dp::detail::for_each_index(
        x.device(), x.shape()[0],
        ce_grad<T>{x.data(), g.value<std::int64_t>(target).data(), st.lse.data(), st.weight.data(),
                   g.grad<T>(out).data(), st.denom.data(), t.t.data(), c, smoothing, !t.first},
        std::max<index_t>(1, 4096 / std::max<index_t>(c, 1)));
  }
};

template <class X>
auto as_contiguous(const X& x) {
  if constexpr (is_var<X>::value) {
    return x;
  } else {
    return x.contiguous();
  }
}

}  // namespace detail

/// Cross entropy between logits [N, C] and class indices [N] (int64), with PyTorch's options.
struct cross_entropy_loss {
  float label_smoothing = 0.f;
  nn::reduction reduction = nn::reduction::mean;
  std::int64_t ignore_index = -100;

  template <class L, class Y>
  auto operator()(const L& logits, const Y& target) const {
    auto x = detail::as_contiguous(detail::materialize(logits));
    auto y = detail::materialize(target);
    using T = typename decltype(x)::value_type;
    static_assert(std::is_floating_point_v<T>, "dp: cross_entropy: logits must be floating-point");
    static_assert(std::is_same_v<typename decltype(y)::value_type, std::int64_t>,
                  "dp: cross_entropy: targets are class indices of type int64 (dp::tensor<std::int64_t>)");
    DP_CHECK(x.rank() == 2, shape_error, "dp: cross_entropy: logits must be [N, C], got shape ", x.shape());
    DP_CHECK(y.rank() == 1 && y.shape()[0] == x.shape()[0], shape_error, "dp: cross_entropy: logits of shape ",
             x.shape(), " need targets of shape {", x.shape()[0], "}, got ", y.shape());
    DP_CHECK(label_smoothing >= 0.f && label_smoothing <= 1.f, value_error,
             "dp: cross_entropy: label_smoothing must lie in [0, 1], got ", label_smoothing);
    if constexpr (detail::is_var<decltype(x)>::value) {
      static_assert(detail::is_var<decltype(y)>::value,
                    "dp: cross_entropy: when logits are traced, pass the targets as an argument of backward()");
      detail::graph& g = *x.graph();
      auto o = std::make_unique<detail::cross_entropy_op<T>>();
      o->logits = x.slot();
      o->target = y.slot();
      o->smoothing = label_smoothing;
      o->red = reduction;
      o->ignore = ignore_index;
      o->out = g.add_slot<T>(empty<T>({}, x.device()), g.requires_grad<T>(x.slot()));
      o->forward(g);
      const int out = o->out;
      g.record(std::move(o));
      return g.make_var<T>(out);
    } else {
      detail::ce_state<T> st;
      tensor<T> out = empty<T>({}, x.device());
      const tensor<std::int64_t> yc = y.contiguous();
      st.run(x, yc, out, label_smoothing, reduction, ignore_index);
      if (x.device().is_cuda()) {
        st.check(yc, x.shape()[1], ignore_index, 0);  // eager: no later read-back would say why
      }
      return out;
    }
  }
};
inline constexpr cross_entropy_loss cross_entropy{};

/// Mean (or sum) of squared differences.
struct mse_loss_fn {
  nn::reduction reduction = nn::reduction::mean;

  template <class A, class B>
  auto operator()(const A& prediction, const B& target) const {
    auto p = detail::materialize(prediction);
    auto t = detail::materialize(target);
    DP_CHECK(p.shape() == t.shape(), shape_error, "dp: mse_loss: prediction of shape ", p.shape(),
             " and target of shape ", t.shape(), " differ");
    if (reduction == nn::reduction::sum) {
      return dp::sum(dp::square(p - t));
    }
    return dp::mean(dp::square(p - t));
  }
};
inline constexpr mse_loss_fn mse_loss{};

namespace detail {
/// The reduction a loss declares (custom callables are taken to return a mean over the batch).
template <class Loss>
nn::reduction reduction_of(const Loss& l) {
  if constexpr (requires { l.reduction; }) {
    return l.reduction;
  } else {
    return nn::reduction::mean;
  }
}
}  // namespace detail

}  // namespace dp::inline DP_ABI::nn
