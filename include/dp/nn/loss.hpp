// Losses. cross_entropy is one fused operation (log-softmax and the negative log-likelihood per row,
// with label smoothing and ignored targets, and a one-pass backward); mse_loss is plain forward code.
#pragma once

#include <algorithm>
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

  /// Writes the outputs of a row whose target is ignored or outside the classes (the latter flagged,
  /// and its loss made NaN so that a GPU step is stopped); false for a row with a class to score.
  DP_HOST_DEVICE bool settled(index_t i) const {
    const std::int64_t label = y[i];
    if (label != ignore && label >= 0 && label < classes) {
      return false;
    }
    if (label != ignore) {
      dp::detail::store_max(bad, rows - i);
    }
    loss[i] = label == ignore ? T(0) : std::numeric_limits<T>::quiet_NaN();
    lse[i] = T(0);
    weight[i] = T(0);
    return true;
  }
  /// Row i's loss from its log-sum-exp `l` and the sum of its logits.
  DP_HOST_DEVICE void finish(index_t i, T l, T total) const {
    const T eps = static_cast<T>(smoothing);
    const T nll = l - x[i * classes + y[i]];
    // Without smoothing the mean term is left out, not multiplied by 0: a masked (-inf) logit makes
    // `total` infinite, and 0 * inf would be NaN where PyTorch gives the finite loss.
    loss[i] = eps == T(0) ? nll : (T(1) - eps) * nll + eps * (l - total / T(classes));
    lse[i] = l;
    weight[i] = T(1);
  }

  DP_HOST_DEVICE void operator()(index_t i) const {
    if (settled(i)) {
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
    finish(i, m + dp::detail::math::log(s), total);
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

  /// The factor of row i's gradient: g w_i / denom (0 for an ignored row).
  DP_HOST_DEVICE T scale(index_t i) const { return weight[i] != T(0) ? *gout * weight[i] / *denom : T(0); }
  /// dlogits[i, j] from logit `xj`, the row's log-sum-exp `l`, target class and scale.
  DP_HOST_DEVICE DP_FORCEINLINE T value(T xj, T l, index_t j, std::int64_t label, T s) const {
    const T eps = static_cast<T>(smoothing);
    const T p = dp::detail::math::exp(xj - l);
    const T target = eps / T(classes) + (j == label ? T(1) - eps : T(0));
    // An ignored row (s = 0) has lse 0, so p may be inf: 0 * inf would be NaN, where PyTorch gives 0.
    return s != T(0) ? s * (p - target) : T(0);
  }

  DP_HOST_DEVICE void operator()(index_t i) const {
    const T* row = x + i * classes;
    T* out = dx + i * classes;
    const T s = scale(i), l = lse[i];
    const std::int64_t label = y[i];
    for (index_t j = 0; j < classes; ++j) {
      const T g = value(row[j], l, j, label, s);
      out[j] = accumulate ? out[j] + g : g;
    }
  }
};

// The host runs both functors on blocks of ce_lanes rows, a row per vector lane. GCC vectorises
// neither a row's sum over its classes (reordering a float sum changes its bits) nor loads of a
// column at a run-time stride, so each tile of up to ce_tile classes is transposed onto the stack
// and every lane adds its row's terms in class order: the per-row functors' bits (tested), 3x (forward)
// and 2x (backward) faster on 64 rows of 10 classes. Rows after the last whole block run per row.
inline constexpr index_t ce_lanes = 16, ce_tile = 32;

template <class T>
using ce_tile_t = T[ce_tile][ce_lanes];

/// tile[j][k] = x[k, j0 + j] for the block's rows k and classes j0 .. j0 + jn.
template <class T>
void ce_load_tile(const T* x, index_t classes, index_t j0, index_t jn, ce_tile_t<T>& tile) {
  for (index_t k = 0; k < ce_lanes; ++k) {
    for (index_t j = 0; j < jn; ++j) {
      tile[j][k] = x[k * classes + j0 + j];
    }
  }
}

template <class T>
struct ce_rows_block {
  ce_rows<T> row;

  void operator()(index_t b) const {
    const index_t i0 = b * ce_lanes, c = row.classes;
    if (row.rows - i0 < ce_lanes || c == 0) {
      for (index_t i = i0; i < row.rows; ++i) {
        row(i);
      }
      return;
    }
    const T* x = row.x + i0 * c;
    ce_tile_t<T> tile;
    T m[ce_lanes], s[ce_lanes] = {}, total[ce_lanes] = {}, l[ce_lanes];
    for (index_t j0 = 0; j0 < c; j0 += ce_tile) {
      const index_t jn = std::min(ce_tile, c - j0);
      ce_load_tile(x, c, j0, jn, tile);
      if (j0 == 0) {
        for (index_t k = 0; k < ce_lanes; ++k) {
          m[k] = tile[0][k];
        }
      }
      for (index_t j = 0; j < jn; ++j) {
        for (index_t k = 0; k < ce_lanes; ++k) {
          m[k] = tile[j][k] > m[k] ? tile[j][k] : m[k];
        }
      }
    }
    for (index_t j0 = 0; j0 < c; j0 += ce_tile) {
      const index_t jn = std::min(ce_tile, c - j0);
      if (c > ce_tile) {  // one tile: still loaded
        ce_load_tile(x, c, j0, jn, tile);
      }
      for (index_t j = 0; j < jn; ++j) {
        for (index_t k = 0; k < ce_lanes; ++k) {
          s[k] += dp::detail::math::exp(tile[j][k] - m[k]);
          total[k] += tile[j][k];
        }
      }
    }
    for (index_t k = 0; k < ce_lanes; ++k) {
      l[k] = m[k] + dp::detail::math::log(s[k]);
    }
    for (index_t k = 0; k < ce_lanes; ++k) {
      if (!row.settled(i0 + k)) {
        row.finish(i0 + k, l[k], total[k]);
      }
    }
  }
};

template <class T>
struct ce_grad_block {
  ce_grad<T> row;
  index_t rows;

  void operator()(index_t b) const {
    const index_t i0 = b * ce_lanes, c = row.classes;
    if (rows - i0 < ce_lanes || c == 0) {
      for (index_t i = i0; i < rows; ++i) {
        row(i);
      }
      return;
    }
    const T* x = row.x + i0 * c;
    T* out = row.dx + i0 * c;
    ce_tile_t<T> tile;
    T s[ce_lanes], l[ce_lanes];
    std::int64_t label[ce_lanes];
    for (index_t k = 0; k < ce_lanes; ++k) {
      s[k] = row.scale(i0 + k);
      l[k] = row.lse[i0 + k];
      label[k] = row.y[i0 + k];
    }
    for (index_t j0 = 0; j0 < c; j0 += ce_tile) {
      const index_t jn = std::min(ce_tile, c - j0);
      ce_load_tile(x, c, j0, jn, tile);
      for (index_t j = 0; j < jn; ++j) {
        for (index_t k = 0; k < ce_lanes; ++k) {
          tile[j][k] = row.value(tile[j][k], l[k], j0 + j, label[k], s[k]);
        }
      }
      for (index_t k = 0; k < ce_lanes; ++k) {
        for (index_t j = 0; j < jn; ++j) {
          T& o = out[k * c + j0 + j];
          o = row.accumulate ? o + tile[j][k] : tile[j][k];
        }
      }
    }
  }
};

/// One pass of a row functor over `rows` rows of `classes` logits on `d`; the host runs its block form.
template <class Row, class Block>
void ce_for_rows(dp::device d, index_t rows, index_t classes, const Row& row, const Block& block) {
  const index_t grain = std::max<index_t>(1, 4096 / std::max<index_t>(classes, 1));
  if (!d.is_cpu() || rows <= 0) {
    dp::detail::for_each_index(d, rows, row, grain);
    return;
  }
  DP_COUNT(passes, 1);
  dp::detail::for_each_index(dp::detail::host_target{}, (rows + ce_lanes - 1) / ce_lanes, block,
                             std::max<index_t>(1, grain / ce_lanes));
}

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
    const ce_rows<T> rows{
        logits.data(), target.data(), loss_rows.data(), lse.data(), weight.data(), c, smoothing, ignore, n, bad.data()};
    ce_for_rows(logits.device(), n, c, rows, ce_rows_block<T>{rows});
    if (logits.device().is_cpu()) {
      check_targets(target, c, ignore, first_row);
    }
    dp::detail::reduce_into<dp::detail::sum_reduce>(total, dp::detail::tensor_node<T>{loss_rows},
                                                    dp::detail::eager_ctx{}, false);
    if (red == reduction::mean) {
      dp::detail::reduce_into<dp::detail::sum_reduce>(denom, dp::detail::tensor_node<T>{weight},
                                                      dp::detail::eager_ctx{}, false);
      if (logits.device().is_cpu()) {
        check_scored(ignore, first_row);
      }
      tensor<T>(out).assign(total / denom);
    } else {
      denom.fill(T(1));
      tensor<T>(out).assign(total);
    }
  }

  /// Throws if the last run flagged a target outside [0, classes), or if its mean had no row to
  /// average. On a GPU this reads the flag and the count back, so it waits for the device: the eager
  /// call does it at once, a trainer only when the loss it reads is not finite.
  void check(const tensor<std::int64_t>& target, index_t classes, std::int64_t ignore, index_t first_row) {
    check_targets(target, classes, ignore, first_row);
    check_scored(ignore, first_row);
  }

  /// Throws if the last run's mean had no row to score: every target was ignore_index, and the
  /// mean would be 0/0 (NaN, as PyTorch gives, and then blamed on the inputs or the learning rate).
  /// A sum's denominator is 1, so only a mean can fail.
  void check_scored(std::int64_t ignore, index_t first_row) const {
    const T d = denom.device().is_cpu() ? *denom.data() : denom.item();
    if (d == T(0)) {
      const index_t n = loss_rows.shape()[0];
      DP_CHECK(n > 0, value_error, "dp: cross_entropy: the batch is empty (no rows): a mean over no rows is undefined");
      throw value_error(dp::detail::concat("dp: cross_entropy: every target of rows ", first_row, " to ",
                                           first_row + n - 1, " is ignore_index (", ignore,
                                           "): a mean over no scored row is undefined (0/0); skip such batches, or "
                                           "use reduction::sum, whose value for them is 0"));
    }
  }

  /// Throws if the last run flagged a target outside [0, classes) (and clears the flag).
  void check_targets(const tensor<std::int64_t>& target, index_t classes, std::int64_t ignore, index_t first_row) {
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
    const index_t n = x.shape()[0];
    const ce_grad<T> rows{x.data(),
                          g.value<std::int64_t>(target).data(),
                          st.lse.data(),
                          st.weight.data(),
                          g.grad<T>(out).data(),
                          st.denom.data(),
                          t.t.data(),
                          c,
                          smoothing,
                          !t.first};
    ce_for_rows(x.device(), n, c, rows, ce_grad_block<T>{rows, n});
  }
};

}  // namespace detail

/// Cross entropy between logits [N, C] and class indices [N] (int64), with PyTorch's options.
struct cross_entropy_loss {
  float label_smoothing = 0.f;
  nn::reduction reduction = nn::reduction::mean;
  std::int64_t ignore_index = -100;
  bool operator==(const cross_entropy_loss&) const = default;  // a trainer traces each value once

  template <class L, class Y>
  auto operator()(const L& logits, const Y& target) const {
    // Row-major reads: a transposed value (eager or traced) is copied first.
    auto x = detail::materialize(logits).contiguous();
    auto y = detail::materialize(target).contiguous();
    using T = typename decltype(x)::value_type;
    constexpr bool float_logits = std::is_floating_point_v<T>;
    constexpr bool index_targets = std::is_same_v<typename decltype(y)::value_type, std::int64_t>;
    constexpr bool traced_pair = !detail::is_var<decltype(x)>::value || detail::is_var<decltype(y)>::value;
    static_assert(float_logits, "dp: cross_entropy: logits must be floating-point");
    static_assert(index_targets,
                  "dp: cross_entropy: targets are class indices of type int64 (dp::tensor<std::int64_t>)");
    static_assert(traced_pair,
                  "dp: cross_entropy: when logits are traced, pass the targets as an argument of backward()");
    if constexpr (!float_logits || !index_targets || !traced_pair) {
      return x;  // the static_assert above is the error; x stands in for the loss, so nothing adds another
    } else {
      return compute(x, y);
    }
  }

 private:
  template <class X, class Y>
  auto compute(const X& x, const Y& y) const {
    using T = typename X::value_type;
    DP_CHECK(x.rank() == 2, shape_error, "dp: cross_entropy: logits must be [N, C], got shape ", x.shape());
    DP_CHECK(y.rank() == 1 && y.shape()[0] == x.shape()[0], shape_error, "dp: cross_entropy: logits of shape ",
             x.shape(), " need targets of shape {", x.shape()[0], "}, got ", y.shape());
    DP_CHECK(label_smoothing >= 0.f && label_smoothing <= 1.f, value_error,
             "dp: cross_entropy: label_smoothing must lie in [0, 1], got ", label_smoothing);
    // The loss runs where the logits are and reads the targets there.
    DP_CHECK(x.device() == y.device(), device_error, "dp: cross_entropy: the logits are on ", x.device(),
             " and the targets on ", y.device(), "; move the targets to the logits' device (.to(", x.device(), "))");
    if constexpr (detail::is_var<X>::value) {
      detail::graph& g = *x.graph();
      auto o = std::make_unique<detail::cross_entropy_op<T>>();
      o->logits = x.slot();
      o->target = y.slot();
      o->smoothing = label_smoothing;
      o->red = reduction;
      o->ignore = ignore_index;
      o->out = g.add_slot<T>(empty<T>({}, x.device()), detail::grad_flows(x));
      o->forward(g);
      const int out = o->out;
      g.record(std::move(o));
      return g.make_var<T>(out);
    } else {
      detail::ce_state<T> st;
      tensor<T> out = empty<T>({}, x.device());
      st.run(x, y, out, label_smoothing, reduction, ignore_index);
      if (x.device().is_cuda()) {
        st.check(y, x.shape()[1], ignore_index, 0);  // eager: no later read-back would say why
      }
      return out;
    }
  }
};
inline constexpr cross_entropy_loss cross_entropy{};

/// Mean (or sum) of squared differences.
struct mse_loss_fn {
  nn::reduction reduction = nn::reduction::mean;
  bool operator==(const mse_loss_fn&) const = default;

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

/// Whether a loss is a mean over the rows it scores rather than over every row: cross_entropy's
/// mean skips the rows whose target is ignore_index. Split over replicas, such a mean is one
/// device's only as a sum of every replica's rows divided by the global count of scored rows (a
/// replica's share of the scored rows is not its share of the rows).
template <class Loss>
bool mean_over_scored_rows(const Loss& l) {
  if constexpr (std::is_same_v<Loss, cross_entropy_loss>) {
    return l.reduction == nn::reduction::mean;
  } else {
    return false;
  }
}

/// A replica's loss: for a mean over scored rows, the same loss reduced by a sum; any other loss
/// itself (a reference: a custom loss need not be copyable).
template <class Loss>
decltype(auto) part_loss(const Loss& l, bool scored_mean) {
  if constexpr (std::is_same_v<Loss, cross_entropy_loss>) {
    cross_entropy_loss part = l;
    if (scored_mean) {
      part.reduction = nn::reduction::sum;
    }
    return part;
  } else {
    return (l);
  }
}

/// The rows of `target` (n of them) that a mean over scored rows counts: for cross_entropy those
/// whose target is not ignore_index (a device's targets are read back to count them), else n.
template <class Loss, class Y>
index_t scored_rows(const Loss& l, const Y& target, index_t n) {
  if constexpr (std::is_same_v<Loss, cross_entropy_loss> && tensor_type<Y>) {
    if constexpr (std::is_same_v<typename Y::value_type, std::int64_t>) {
      if (mean_over_scored_rows(l)) {
        const tensor<std::int64_t> host = target.device().is_cpu() ? target : target.to(dp::cpu());
        index_t scored = 0;
        if (host.is_contiguous()) {
          const std::int64_t* y = host.data();
          for (index_t i = 0; i < host.numel(); ++i) {
            scored += y[i] != l.ignore_index;
          }
        } else {
          for (const std::int64_t v : host.to_vector()) {
            scored += v != l.ignore_index;
          }
        }
        return scored;
      }
    }
  }
  return n;
}

/// Throws unless a mean over scored rows has some: its global batch of `rows` rows, `scored` of
/// them scored (the same error on every rank and device count, before any replica computes).
template <class Loss>
void require_scored_rows(const Loss& l, index_t scored, index_t rows) {
  if constexpr (std::is_same_v<Loss, cross_entropy_loss>) {
    DP_CHECK(scored > 0, value_error, "dp: cross_entropy: every target of the global batch of ", rows,
             " rows is ignore_index (", l.ignore_index,
             "): a mean over no scored row is undefined (0/0); skip such batches, or use reduction::sum, whose "
             "value for them is 0");
  }
}
}  // namespace detail

}  // namespace dp::inline DP_ABI::nn
