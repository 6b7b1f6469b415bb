// nn::embedding<Num, Dim>: rows of a [Num, Dim] table picked by int64 indices (N(0, 1) init, as in
// PyTorch). Backward adds each output row's gradient to its table row, parallel over the Dim
// columns so no two threads write the same element (deterministic on the host).
#pragma once

#include <cstdint>
#include <limits>
#include <memory>

#include <dp/exec/for_each.hpp>
#include <dp/nn/autograd/ops.hpp>
#include <dp/nn/parameter.hpp>

namespace dp::inline DP_ABI::nn {
namespace detail {

/// Output element e is row idx[e / dim] of the table. An index outside [0, num) (checked on the host
/// before; on a GPU only here) is flagged and gives NaN, never a read outside the table.
template <class T>
struct embedding_gather {
  const T* table;
  const std::int64_t* idx;
  T* out;
  index_t dim, num, count;
  std::int64_t* bad;  // count - (the first bad position); 0: none
  DP_HOST_DEVICE void operator()(index_t e) const {
    const index_t pos = e / dim;
    const std::int64_t k = idx[pos];
    if (k < 0 || k >= num) {
      dp::detail::store_max(bad, count - pos);
      out[e] = std::numeric_limits<T>::quiet_NaN();
      return;
    }
    out[e] = table[k * dim + e % dim];
  }
};

template <class T>
struct embedding_scatter {  // one column per call: deterministic order over rows
  const T* grad;
  const std::int64_t* idx;
  T* dtable;
  index_t rows, dim, num;
  DP_HOST_DEVICE void operator()(index_t d) const {
    for (index_t r = 0; r < rows; ++r) {
      const std::int64_t k = idx[r];
      if (k >= 0 && k < num) {  // a bad index was flagged by the gather
        dtable[k * dim + d] += grad[r * dim + d];
      }
    }
  }
};

/// Throws if the gather flagged an index (and clears the flag). On a GPU this reads the flag back.
inline void check_flag(const tensor<std::int64_t>& bad, const tensor<std::int64_t>& idx, index_t num) {
  const std::int64_t b = bad.device().is_cpu() ? *bad.data() : bad.item();
  if (b != 0) {
    tensor<std::int64_t>(bad).fill(0);
    const index_t pos = idx.numel() - b;
    const tensor<std::int64_t> flat = idx.reshape({idx.numel()});
    throw value_error(dp::detail::concat("dp: embedding: index ", flat.slice(0, pos, pos + 1).item(), " at position ",
                                         pos, " is outside [0, ", num, ")"));
  }
}

inline void check_indices(const tensor<std::int64_t>& idx, index_t num) {
  if (!idx.device().is_cpu()) {
    return;  // the GPU gather flags them (reading device memory here would wait for the device)
  }
  const std::int64_t* p = idx.data();
  for (index_t i = 0; i < idx.numel(); ++i) {
    DP_CHECK(p[i] >= 0 && p[i] < num, value_error, "dp: embedding: index ", p[i], " at position ", i,
             " is outside [0, ", num, ")");
  }
}

template <class T>
struct embedding_op final : op {
  int idx_slot, out;
  tensor<T> table, table_grad;
  tensor<std::int64_t> bad;  // the gather's flag (check_flag)
  index_t num;
  grad_target<T> t;

  const char* name() const override { return "embedding"; }
  void forward(graph& g) override {
    const tensor<std::int64_t>& idx = g.value<std::int64_t>(idx_slot);
    check_indices(idx, num);
    const index_t dim = table.shape()[1];
    if (!bad.defined()) {
      bad = zeros<std::int64_t>({}, table.device());
    }
    dp::detail::for_each_index(
        table.device(), idx.numel() * dim,
        embedding_gather<T>{table.data(), idx.data(), g.value<T>(out).data(), dim, num, idx.numel(), bad.data()});
  }
  void check_flags(graph& g) override { check_flag(bad, g.value<std::int64_t>(idx_slot), num); }
  void plan(graph& g) override {
    if (g.receives_grad<T>(out)) {
      t = g.param_target<T>(table_grad);
    }
  }
  void backward(graph& g) override {
    if (!t.active) {
      return;
    }
    if (t.first && !g.accumulate_params) {
      tensor<T>(t.t).fill(T(0));
    }
    const tensor<std::int64_t>& idx = g.value<std::int64_t>(idx_slot);
    const index_t dim = table.shape()[1];
    dp::detail::for_each_index(
        table.device(), dim, embedding_scatter<T>{g.grad<T>(out).data(), idx.data(), t.t.data(), idx.numel(), dim, num},
        1);
  }
};

}  // namespace detail

template <index_t Num, index_t Dim, class T = float>
struct embedding {
  static_assert(Num > 0 && Dim > 0, "dp: embedding<Num, Dim> needs positive sizes");
  static constexpr index_t out_features = Dim;
  using value_type = T;
  parameter<T> weight{init::normal<T>({Num, Dim}, T(1))};

  static void dp_members(auto& self, auto&& f) { f("weight", self.weight); }

  template <class X>
  auto forward(const X& x) const {
    auto idx = detail::materialize(x).contiguous();  // the gather reads indices in order
    constexpr bool indices = std::is_same_v<typename decltype(idx)::value_type, std::int64_t>;
    static_assert(indices, "dp: embedding takes int64 indices (dp::tensor<std::int64_t>)");
    if constexpr (!indices) {
      return tensor<T>{};  // the static_assert above is the error, and the only one
    } else {
      return lookup(idx);
    }
  }
  template <class X>
  auto operator()(const X& x) const {
    return forward(x);
  }

 private:
  template <class I>
  auto lookup(const I& idx) const {
    // The gather runs where the table is and reads the indices there (host indices for a GPU
    // table would be a host pointer in a kernel).
    DP_CHECK(idx.device() == weight.device(), device_error, "dp: embedding<", Num, ", ", Dim, ">: the indices are on ",
             idx.device(), " and the table on ", weight.device(), "; move the indices to the table's device (.to(",
             weight.device(), "))");
    dp::shape out = idx.shape();
    out.push_back(Dim);
    if constexpr (detail::is_var<I>::value) {
      detail::graph& g = *idx.graph();
      auto o = std::make_unique<detail::embedding_op<T>>();
      o->idx_slot = idx.slot();
      o->table = weight.value();
      o->table_grad = weight.grad();
      o->num = Num;
      o->out = g.add_slot<T>(empty<T>(out, weight.device()), weight.grad().defined());
      o->forward(g);
      const int slot = o->out;
      g.record(std::move(o));
      return g.make_var<T>(slot);
    } else {
      detail::check_eager_parameter(weight);
      const tensor<std::int64_t> c = idx.contiguous();
      detail::check_indices(c, Num);
      tensor<T> y = empty<T>(out, weight.device());
      const tensor<std::int64_t> bad = zeros<std::int64_t>({}, weight.device());
      dp::detail::for_each_index(
          weight.device(), c.numel() * Dim,
          detail::embedding_gather<T>{weight.value().data(), c.data(), y.data(), Dim, Num, c.numel(), bad.data()});
      if (weight.device().is_cuda()) {
        detail::check_flag(bad, c, Num);  // eager: no later read-back would say why
      }
      return y;
    }
  }
};

}  // namespace dp::inline DP_ABI::nn
