// dp::matmul with torch.matmul's rules: 1-D and 2-D operands, batched operands with broadcast
// batch dimensions. Transposed views are handed to BLAS as transpose flags; only operands whose
// last two dimensions are neither row- nor column-major are copied.
#pragma once

#include <string_view>

#include <dp/config.hpp>
#include <dp/core/tensor.hpp>
#include <dp/exec/blas.hpp>
#include <dp/exec/cpu.hpp>
#include <dp/exec/factory.hpp>

namespace dp::inline DP_ABI {
namespace detail {

/// The matrix view of a tensor's last two dimensions, or nothing when BLAS cannot take it as is.
template <class T>
bool matrix_view(const tensor<T>& t, mat_ref<const T>& out) {
  const int r = t.rank();
  const index_t rows = t.shape()[r - 2], cols = t.shape()[r - 1];
  index_t sr = t.strides()[r - 2], sc = t.strides()[r - 1];
  if (rows == 1) {
    sr = std::max<index_t>(cols, 1);
  }
  if (cols == 1) {
    sc = 1;
    if (rows == 1) {
      sr = 1;
    }
  }
  if (sc == 1 && sr >= std::max<index_t>(cols, 1)) {
    out = {t.data(), rows, cols, sr, false};
    return true;
  }
  if (sr == 1 && sc >= std::max<index_t>(rows, 1)) {
    out = {t.data(), rows, cols, sc, true};
    return true;
  }
  return false;
}

/// c[batch..., m, n] = alpha a @ b + beta c, with a and b at least 2-D and batch dimensions
/// broadcast; c contiguous with the broadcast batch shape.
template <class T>
void matmul_into(const tensor<T>& c, tensor<T> a, tensor<T> b, T alpha = T(1), T beta = T(0)) {
  DP_CHECK(a.device() == b.device() && a.device() == c.device(), device_error, "dp: matmul: operands are on ",
           a.device(), " and ", b.device(), " (result on ", c.device(), "); move them to one device");
  mat_ref<const T> ma{}, mb{};
  if (!matrix_view(a, ma)) {
    a = a.clone();
    matrix_view(a, ma);
  }
  if (!matrix_view(b, mb)) {
    b = b.clone();
    matrix_view(b, mb);
  }
  const int rc = c.rank();
  const shape batch = [&] {
    shape s;
    for (int i = 0; i + 2 < rc; ++i) {
      s.push_back(c.shape()[i]);
    }
    return s;
  }();
  const index_t m = c.shape()[rc - 2], n = c.shape()[rc - 1];
  const index_t nb = batch.numel();
  auto batch_offset = [&](const tensor<T>& x, index_t bi) {
    index_t off = 0;
    const int lead = batch.rank() - (x.rank() - 2);
    for (int i = batch.rank() - 1; i >= 0; --i) {
      const index_t ci = bi % batch[i];
      bi /= batch[i];
      const int xi = i - lead;
      if (xi >= 0 && x.shape()[xi] != 1) {
        off += ci * x.strides()[xi];
      }
    }
    return off;
  };
  auto product = [&](index_t bi) {
    mat_ref<const T> aa = ma, bb = mb;
    aa.data += batch_offset(a, bi);
    bb.data += batch_offset(b, bi);
    mat_ref<T> cc{c.data() + bi * m * n, m, n, std::max<index_t>(n, 1), false};
    gemm(c.device(), aa, bb, cc, alpha, beta);
  };
  // Products the GEMM would not split (too few multiply-adds, or too few rows and columns for two
  // blocks: 64 x 64 x 4096 has 2^24) are spread over the pool, a part taking whole products: one
  // after another they all ran on the caller's thread. Each is computed as before, bit for bit,
  // into its own slice of c.
  const double macs = static_cast<double>(m) * static_cast<double>(n) * static_cast<double>(ma.cols);
  if (nb > 1 && c.device().is_cpu() && gemm_parts(m, n, ma.cols) <= 1) {
    const auto grain = static_cast<index_t>(static_cast<double>(gemm_parallel_macs) / std::max(macs, 1.0));
    parallel_for(nb, std::max<index_t>(grain, 1), [&](index_t lo, index_t hi) {
      DP_COUNT(batch_parts, 1);
      for (index_t bi = lo; bi < hi; ++bi) {
        product(bi);
      }
    });
    return;
  }
  for (index_t bi = 0; bi < nb; ++bi) {
    product(bi);
  }
}

}  // namespace detail

/// Matrix product with torch.matmul's rules (1-D operands are promoted and the added dimension
/// removed; batch dimensions broadcast). Float and double.
template <class T>
tensor<T> matmul(const tensor<T>& a0, const tensor<T>& b0) {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>, "dp: matmul supports float and double");
  DP_CHECK(a0.defined() && b0.defined(), value_error, "dp: matmul of an undefined tensor");
  DP_CHECK(a0.rank() >= 1 && b0.rank() >= 1, shape_error, "dp: matmul: shapes ", a0.shape(), " and ", b0.shape(),
           ": both operands need at least one dimension");
  const bool a_vec = a0.rank() == 1, b_vec = b0.rank() == 1;
  const tensor<T> a = a_vec ? a0.unsqueeze(0) : a0;
  const tensor<T> b = b_vec ? b0.unsqueeze(1) : b0;
  const index_t k = a.shape()[a.rank() - 1];
  DP_CHECK(k == b.shape()[b.rank() - 2], shape_error, "dp: matmul: shapes ", a0.shape(), " and ", b0.shape(),
           " do not fit: the inner dimensions differ (", k, " vs ", b.shape()[b.rank() - 2], ")");
  shape ba, bb;
  for (int i = 0; i + 2 < a.rank(); ++i) {
    ba.push_back(a.shape()[i]);
  }
  for (int i = 0; i + 2 < b.rank(); ++i) {
    bb.push_back(b.shape()[i]);
  }
  shape out;
  try {
    out = broadcast_shapes(ba, bb, "matmul (batch dimensions)");
  } catch (const shape_error& e) {  // the message names the batch parts; the operands' shapes come first
    throw shape_error(detail::concat("dp: matmul of shapes ", a0.shape(), " and ", b0.shape(), ": ",
                                     std::string_view(e.what()).substr(4)));
  }
  out.push_back(a.shape()[a.rank() - 2]);
  out.push_back(b.shape()[b.rank() - 1]);
  tensor<T> c = empty<T>(out, a.device());
  detail::matmul_into(c, a, b);
  shape result;
  for (int i = 0; i < out.rank(); ++i) {
    if ((a_vec && i == out.rank() - 2) || (b_vec && i == out.rank() - 1)) {
      continue;
    }
    result.push_back(out[i]);
  }
  return c.reshape(result);
}

/// matmul of expressions (or of tensors of two element types, refused): the operands are evaluated
/// first.
template <expression A, expression B>
  requires((!tensor_type<A> || !tensor_type<B> ||
            !std::is_same_v<typename detail::node_of<A>::value_type, typename detail::node_of<B>::value_type>) &&
           !detail::traced_v<detail::node_of<A>> && !detail::traced_v<detail::node_of<B>>)
auto matmul(const A& a, const B& b) {
  using T = typename detail::node_of<A>::value_type;
  // Evaluating b as a's type would round a double operand to float (or an integer one) silently.
  constexpr bool same = std::is_same_v<T, typename detail::node_of<B>::value_type>;
  static_assert(same,
                "dp: matmul: the operands have different element types; convert one with dp::cast<T>(x) "
                "(PyTorch refuses this too)");
  if constexpr (same) {
    return matmul<T>(tensor<T>(a), tensor<T>(b));
  } else {
    return tensor<T>{};  // the static_assert above is the error
  }
}

}  // namespace dp::inline DP_ABI
