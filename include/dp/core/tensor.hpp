// dp::tensor<T>: a handle to a strided view of reference-counted storage on one device.
//
// Copies of a tensor share storage (like torch.Tensor and views); `clone()` copies values.
// Assigning an expression writes into the tensor's own memory in one fused pass
// (`y = a * x + b` allocates nothing when y already has the shape). Assigning a tensor to a named
// tensor rebinds the handle (`t = u`, like Python's `t = u`); assigning a tensor to a temporary view
// writes values (`x.slice(0, 0, 2) = u`, like Python's `x[0:2] = u`). An undefined
// (default-constructed) tensor takes the expression's shape on assignment.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <span>
#include <type_traits>
#include <utility>
#include <vector>

#include <dp/config.hpp>
#include <dp/core/device.hpp>
#include <dp/core/error.hpp>
#include <dp/core/memory.hpp>
#include <dp/core/operand.hpp>
#include <dp/core/shape.hpp>

namespace dp::inline DP_ABI {

namespace detail {
struct tensor_access;
template <class X>
struct is_tensor : std::false_type {};
template <class T, class E>
struct is_tensor<tensor<T, E>> : std::true_type {};
}  // namespace detail

/// True for dp::tensor<T> and dp::tensor<T, extents<...>>.
template <class X>
concept tensor_type = detail::is_tensor<std::remove_cvref_t<X>>::value;

template <class T>
class tensor<T, dynamic_extents> {
  static_assert(std::is_arithmetic_v<T> && !std::is_const_v<T>,
                "dp: tensor<T> holds arithmetic values (float, double, an integer type or bool), not const ones: "
                "for read-only access pass a const tensor<T>&");

 public:
  using value_type = T;

  /// An undefined tensor: no storage, shape {}. Assigning an expression to it allocates.
  tensor() = default;
  tensor(const tensor&) = default;
  tensor(tensor&&) noexcept = default;
  tensor& operator=(const tensor&) & = default;  // a named tensor: rebinds the handle
  tensor& operator=(tensor&&) & noexcept = default;
  /// A temporary view (`x.t() = u`, `x[0] = u`): writes u's values into the viewed elements.
  tensor& operator=(const tensor& src) && {
    assign(src);
    return *this;
  }

  /// A view of `st` (element offset and strides in elements).
  tensor(detail::storage_ref st, index_t offset, dp::shape shp, dp::shape strides)
      : st_(std::move(st)), offset_(offset), shape_(shp), strides_(strides), dev_(st_ ? st_->dev : dp::cpu()) {}

  /// Evaluates an expression into new memory.
  template <expression E>
    requires(!tensor_type<E>)
  tensor(const E& e) {  // NOLINT(google-explicit-constructor): expressions convert to tensors like values
    detail::assign(*this, e);
  }

  /// Evaluates an expression into this tensor's memory (allocates when undefined).
  template <expression E>
    requires(!tensor_type<E>)
  tensor& operator=(const E& e) {
    detail::assign(*this, e);
    return *this;
  }
  /// Sets every element (the tensor must be defined).
  template <scalar S>
  tensor& operator=(S value) {
    return fill(value);
  }

  template <class E>
  tensor& operator+=(const E& e) {
    detail::assign(*this, *this + e);
    return *this;
  }
  template <class E>
  tensor& operator-=(const E& e) {
    detail::assign(*this, *this - e);
    return *this;
  }
  template <class E>
  tensor& operator*=(const E& e) {
    detail::assign(*this, *this * e);
    return *this;
  }
  template <class E>
  tensor& operator/=(const E& e) {
    detail::assign(*this, *this / e);
    return *this;
  }

  /// Writes the values of `e` (broadcast to this shape) into this tensor's memory.
  template <class E>
  tensor& assign(const E& e) {
    DP_CHECK(defined(), value_error, "dp: assign() needs a defined tensor; use `tensor<T> t = expr;` to create one");
    detail::assign(*this, e);
    return *this;
  }
  tensor& fill(T value);
  /// A number of another type is converted by fill_value_as: refused when it would wrap, lose a
  /// fraction or overflow to infinity (a conversion at the call would do any of them silently).
  template <scalar S>
    requires(!std::is_same_v<S, T>)
  tensor& fill(S value) {
    return fill(detail::fill_value_as<T>(value));
  }

  // ------------------------------------------------------------------ properties
  bool defined() const noexcept { return static_cast<bool>(st_); }
  const dp::shape& shape() const noexcept { return shape_; }
  const dp::shape& strides() const noexcept { return strides_; }
  int rank() const noexcept { return shape_.rank(); }
  index_t numel() const noexcept { return shape_.numel(); }
  /// Extent of one dimension (negative counts from the back). Axes are index_t here and below: an int
  /// parameter would wrap axis 2^32 to axis 0 before any range check saw it.
  index_t size(index_t dim) const { return shape_[existing_axis(dim, rank(), "size")]; }
  dp::device device() const noexcept { return dev_; }
  index_t storage_offset() const noexcept { return offset_; }
  const detail::storage_ref& storage() const noexcept { return st_; }
  /// Pointer to the first element (a device pointer for CUDA tensors).
  T* data() const noexcept { return st_ ? static_cast<T*>(st_->data) + offset_ : nullptr; }
  bool is_contiguous() const noexcept {
    if (numel() == 0) {  // no element to be out of place (a [2, 0] slice of a [2, 3] tensor)
      return true;
    }
    index_t expect = 1;
    for (int i = rank() - 1; i >= 0; --i) {
      if (shape_[i] != 1 && strides_[i] != expect) {
        return false;
      }
      expect *= shape_[i];
    }
    return true;
  }
  /// True when both tensors view the same storage block.
  bool shares_storage(const tensor& o) const noexcept { return st_ && st_.get() == o.st_.get(); }

  // ------------------------------------------------------------------ views (share storage)
  /// Elements [begin, end) with `step` along `dim`; negative begin/end count from the back.
  tensor slice(index_t dim, index_t begin, index_t end, index_t step = 1) const {
    const int d = existing_axis(dim, rank(), "slice");
    const index_t n = shape_[d];
    DP_CHECK(step > 0, value_error, "dp: slice: step must be positive, got ", step);
    if (begin < 0) {
      begin += n;
    }
    if (end < 0) {
      end += n;
    }
    begin = std::clamp<index_t>(begin, 0, n);
    end = std::clamp<index_t>(end, begin, n);
    tensor r = *this;
    r.offset_ += begin * strides_[d];
    // Counted without end - begin + step - 1, which wraps for a step near INT64_MAX.
    r.shape_[d] = end == begin ? 0 : (end - begin - 1) / step + 1;
    if (r.shape_[d] > 1) {  // then step < n, and the new stride stays inside the tensor's span
      r.strides_[d] *= step;
    }
    return r;
  }
  /// The sub-tensor at `index` along `dim` (that dimension removed).
  tensor select(index_t dim, index_t index) const {
    const int d = existing_axis(dim, rank(), "select");
    DP_CHECK(index >= -shape_[d] && index < shape_[d], value_error, "dp: select: index ", index,
             " is out of range for dimension ", d, " of size ", shape_[d], " (shape ", shape_, ")");
    if (index < 0) {
      index += shape_[d];
    }
    tensor r = *this;
    r.offset_ += index * strides_[d];
    r.shape_.erase(d);
    r.strides_.erase(d);
    return r;
  }
  tensor operator[](index_t index) const { return select(0, index); }

  /// Swaps two dimensions (no copy).
  tensor transpose(index_t d0, index_t d1) const {
    const int a = normalize_axis(d0, rank(), "transpose"), b = normalize_axis(d1, rank(), "transpose");
    tensor r = *this;
    std::swap(r.shape_[a], r.shape_[b]);
    std::swap(r.strides_[a], r.strides_[b]);
    return r;
  }
  /// The transpose of a 2-D tensor; a 0-D or 1-D one as it is (PyTorch's t()).
  tensor t() const {
    DP_CHECK(rank() <= 2, shape_error, "dp: t() takes a tensor of at most 2 dimensions, got shape ", shape_,
             "; use transpose(d0, d1)");
    return rank() < 2 ? *this : transpose(0, 1);
  }
  /// Reorders dimensions: result dimension i is dimension order[i].
  tensor permute(const dp::shape& order) const {
    DP_CHECK(order.rank() == rank(), shape_error, "dp: permute: order ", order, " does not list the ", rank(),
             " dimensions of shape ", shape_);
    tensor r = *this;
    bool seen[max_rank] = {};
    for (int i = 0; i < rank(); ++i) {
      const int d = normalize_axis(order[i], rank(), "permute");
      DP_CHECK(!seen[d], shape_error, "dp: permute: dimension ", d, " appears twice in ", order);
      seen[d] = true;
      r.shape_[i] = shape_[d];
      r.strides_[i] = strides_[d];
    }
    return r;
  }
  /// A view with size-1 dimensions repeated (stride 0) to `target` (NumPy rules).
  tensor broadcast_to(const dp::shape& target) const {
    detail::check_extents(target, "broadcast_to");
    DP_CHECK(broadcastable_to(shape_, target), shape_error, "dp: broadcast_to: shape ", shape_,
             " cannot be broadcast to ", target);
    tensor r = *this;
    r.shape_ = target;
    r.strides_ = dp::shape::filled(target.rank(), 0);
    for (int i = 0; i < rank(); ++i) {
      const int j = target.rank() - rank() + i;
      r.strides_[j] = shape_[i] == target[j] ? strides_[i] : 0;
    }
    return r;
  }
  /// Removes dimension `dim`, which must have size 1.
  tensor squeeze(index_t dim) const {
    if (rank() == 0) {  // PyTorch's rule: axis 0 or -1 of a 0-d tensor leaves it as it is
      (void)normalize_axis(dim, 0, "squeeze");
      return *this;
    }
    const int d = existing_axis(dim, rank(), "squeeze");
    DP_CHECK(shape_[d] == 1, shape_error, "dp: squeeze: dimension ", d, " of shape ", shape_, " has size ", shape_[d],
             ", expected 1");
    tensor r = *this;
    r.shape_.erase(d);
    r.strides_.erase(d);
    return r;
  }
  /// Inserts a size-1 dimension at `dim` (0..rank).
  tensor unsqueeze(index_t dim) const {
    const index_t p = dim < 0 ? dim + rank() + 1 : dim;  // checked at 64 bits, then narrowed
    DP_CHECK(p >= 0 && p <= rank(), value_error, "dp: unsqueeze: position ", dim, " is out of range for rank ", rank(),
             " (expected -", rank() + 1, "..", rank(), ")");
    const int d = static_cast<int>(p);
    tensor r = *this;
    r.shape_.insert(d, 1);
    r.strides_.insert(d, d < rank() ? strides_[d] * shape_[d] : 1);
    return r;
  }
  /// The same elements with another shape (one extent may be -1). A view when the tensor is
  /// contiguous, otherwise a copy (like torch.reshape).
  tensor reshape(dp::shape target) const {
    target = infer_shape(target);
    if (!is_contiguous()) {
      return contiguous().reshape(target);
    }
    tensor r = *this;
    r.shape_ = target;
    r.strides_ = contiguous_strides(target);
    return r;
  }
  /// Like reshape, but never copies: throws for a non-contiguous tensor.
  tensor view(dp::shape target) const {
    DP_CHECK(is_contiguous(), shape_error, "dp: view: the tensor of shape ", shape_, " and strides ", strides_,
             " is not contiguous; use reshape() (which copies) or contiguous() first");
    return reshape(target);
  }
  /// Merges dimensions start..end into one.
  tensor flatten(index_t start = 0, index_t end = -1) const { return reshape(flattened_shape(shape_, start, end)); }

  // ------------------------------------------------------------------ copies
  /// A contiguous copy on the same device.
  tensor clone() const;
  /// This tensor if contiguous, else a contiguous copy.
  tensor contiguous() const { return is_contiguous() ? *this : clone(); }
  /// This tensor on `d` (itself when already there).
  tensor to(dp::device d) const;
  /// The values converted to another element type.
  template <class U>
  tensor<U> to() const;
  /// The single value of a one-element tensor (waits for the device).
  T item() const;
  /// A host copy of the values in row-major order.
  std::vector<T> to_vector() const;

 private:
  friend struct detail::tensor_access;

  dp::shape infer_shape(dp::shape target) const {
    int unknown = -1;
    dp::shape given = target;  // the -1 read as 1: the known extents' product must not overflow
    for (int i = 0; i < target.rank(); ++i) {
      if (target[i] == -1) {
        DP_CHECK(unknown < 0, shape_error, "dp: reshape: only one extent of ", target, " may be -1");
        unknown = i;
        given[i] = 1;
      } else {
        DP_CHECK(target[i] >= 0, shape_error, "dp: reshape: extent ", target[i], " in ", target, " is negative");
      }
    }
    detail::check_extents(given, "reshape");
    const index_t known = given.numel();
    if (unknown >= 0) {
      DP_CHECK(known != 0 && numel() % known == 0, shape_error, "dp: reshape: cannot reshape ", shape_, " (", numel(),
               " elements) to ", target);
      target[unknown] = numel() / known;
    }
    DP_CHECK(target.numel() == numel(), shape_error, "dp: reshape: cannot reshape ", shape_, " (", numel(),
             " elements) to ", target, " (", target.numel(), " elements)");
    return target;
  }

  detail::storage_ref st_;
  index_t offset_ = 0;
  dp::shape shape_;
  dp::shape strides_;
  dp::device dev_ = dp::cpu();
};

namespace detail {
struct tensor_access {
  /// The same host memory seen as belonging to another host worker: no copy. Host workers share
  /// memory; the device tag only keeps one replica's tensors from mixing with another's by mistake.
  template <class T>
  static tensor<T> on_host_worker(const tensor<T>& t, dp::device d) {
    DP_CHECK(t.device().is_cpu() && d.is_cpu(), device_error, "dp: internal: retagging needs host tensors");
    tensor<T> r = t;
    r.dev_ = d;
    return r;
  }
};
}  // namespace detail

/// A tensor whose rank and some extents are fixed at compile time:
/// `tensor<float, extents<dyn, 784>>` holds only shapes {n, 784}; construction checks it.
template <class T, index_t... E>
class tensor<T, extents<E...>> : public tensor<T> {
 public:
  using extents_type = extents<E...>;
  using base = tensor<T>;

  tensor() = default;
  tensor(const base& t) : base(t) { check(); }  // NOLINT(google-explicit-constructor)
  template <expression X>
    requires(!tensor_type<X>)
  tensor(const X& e) : base(e) {  // NOLINT(google-explicit-constructor)
    check();
  }
  template <expression X>
    requires(!tensor_type<X>)
  tensor& operator=(const X& e) {
    if (this->defined()) {
      base::operator=(e);  // in place: the shape stays the one checked
    } else {
      base t(e);  // checked before it becomes this tensor, so a refusal leaves it undefined
      check(t.shape());
      base::operator=(t);
    }
    return *this;
  }
  /// The static extent of dimension i (dp::dyn when dynamic).
  static constexpr index_t static_extent(int i) { return extents_type::values[i]; }

 private:
  void check() const {
    if (this->defined()) {
      check(this->shape());
    }
  }
  static void check(const dp::shape& s) {
    DP_CHECK(extents_type::matches(s), shape_error, "dp: tensor<", extents_type::str(),
             "> cannot hold a tensor of shape ", s);
  }
};

/// A tensor of `shp` on `d` with unspecified values (from the device's caching pool).
template <class T>
tensor<T> empty(const shape& shp, device d = cpu()) {
  // Every extent non-negative, the byte count representable (a product that wraps would allocate a
  // small block and let the kernels write far past it), and the product of the non-zero extents, as
  // reshape requires ({0, 2^40, 2^40} holds nothing, but its stride 2^80 overflowed).
  // A zero extent anywhere holds no bytes, whatever the others: {2^62, 0} as {0, 2^62}.
  std::size_t bytes = std::find(shp.begin(), shp.end(), index_t{0}) != shp.end() ? 0 : sizeof(T);
  index_t extent = 1;
  for (int i = 0; i < shp.rank(); ++i) {
    DP_CHECK(shp[i] >= 0, shape_error, "dp: empty: shape ", shp, " has a negative extent");
    DP_CHECK(!__builtin_mul_overflow(bytes, static_cast<std::size_t>(shp[i]), &bytes) &&
                 bytes <= static_cast<std::size_t>(INT64_MAX),
             shape_error, "dp: empty: shape ", shp, " holds more elements of ", sizeof(T),
             " bytes than memory can address (their byte count overflows 64 bits)");
    DP_CHECK(!__builtin_mul_overflow(extent, std::max<index_t>(shp[i], 1), &extent), shape_error, "dp: empty: shape ",
             shp,
             " is too large: its non-zero extents multiply to more than 2^63 (as for reshape: strides and "
             "indices must stay within 64 bits)");
  }
  auto st = detail::allocate(d, std::max<std::size_t>(1, bytes));
  return tensor<T>(std::move(st), 0, shp, contiguous_strides(shp));
}

}  // namespace dp::inline DP_ABI
