// dist::any_communicator: any communicator behind one type, so that dp::parallel holds the local,
// hierarchical, MPI and NCCL communicators alike. The only erasure of the concept: one virtual call
// per operation, tensors passed as a variant of the element types, requests carried inline.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <utility>
#include <variant>

#include <dp/core/element_types.hpp>
#include <dp/core/tensor.hpp>
#include <dp/dist/communicator.hpp>

namespace dp::inline DP_ABI::dist {

class any_communicator {
 public:
  /// A collective in flight (the erased communicator's own request, copied in place).
  struct request {
    alignas(16) std::byte bytes[max_request_bytes];
  };

  template <communicator C>
  explicit any_communicator(C c) : self_(std::make_unique<model<C>>(std::move(c))) {}

  int rank() const { return self_->rank(); }
  int size() const { return self_->size(); }
  std::string name() const { return self_->name(); }

  template <class T>
  void all_reduce(tensor<T>& t, reduce_op op) {
    if constexpr (carried<T>()) {
      self_->all_reduce(&t, op);
    }
  }
  template <class T>
  void broadcast(tensor<T>& t, int root) {
    if constexpr (carried<T>()) {
      self_->broadcast(&t, root);
    }
  }
  template <class T>
  void all_gather(const tensor<T>& in, tensor<T>& out) {
    if constexpr (carried<T>()) {
      self_->all_gather(&in, &out);
    }
  }
  template <class T>
  void reduce_scatter(const tensor<T>& in, tensor<T>& out, reduce_op op) {
    if constexpr (carried<T>()) {
      self_->reduce_scatter(&in, &out, op);
    }
  }
  template <class T>
  void all_to_all(const tensor<T>& in, tensor<T>& out) {
    if constexpr (carried<T>()) {
      self_->all_to_all(&in, &out);
    }
  }
  void barrier() { self_->barrier(); }
  template <class T>
  request start_all_reduce(tensor<T>& t, reduce_op op) {
    if constexpr (carried<T>()) {
      return self_->start_all_reduce(&t, op);
    } else {
      return {};
    }
  }
  bool test(request& q) { return self_->test(q); }
  void wait(request& q) { self_->wait(q); }
  void abort(const std::string& why) { self_->abort(why); }
  void recover() { self_->recover(); }

 private:
  /// Whether tensors of T pass through the erasure; reports them if not (the only error then).
  template <class T>
  static constexpr bool carried() {
    static_assert(dp::detail::model_element<T>,
                  "dp: any_communicator carries float, double or int64 tensors (the element types a model keeps): "
                  "convert with dp::cast<T>(x), or call the communicator itself");
    return dp::detail::model_element<T>;
  }
  using any_tensor = dp::detail::over_model_elements<std::variant, dp::detail::tensor_pointer>;
  using any_input = dp::detail::over_model_elements<std::variant, dp::detail::const_tensor_pointer>;

  struct concept_t {
    virtual ~concept_t() = default;
    virtual int rank() const = 0;
    virtual int size() const = 0;
    virtual std::string name() const = 0;
    virtual void all_reduce(any_tensor t, reduce_op op) = 0;
    virtual void broadcast(any_tensor t, int root) = 0;
    virtual void all_gather(any_input in, any_tensor out) = 0;
    virtual void reduce_scatter(any_input in, any_tensor out, reduce_op op) = 0;
    virtual void all_to_all(any_input in, any_tensor out) = 0;
    virtual void barrier() = 0;
    virtual request start_all_reduce(any_tensor t, reduce_op op) = 0;
    virtual bool test(request& q) = 0;
    virtual void wait(request& q) = 0;
    virtual void abort(const std::string& why) = 0;
    virtual void recover() = 0;
  };

  template <class C>
  struct model final : concept_t {
    using native = typename C::request;
    C c;
    explicit model(C x) : c(std::move(x)) {}
    int rank() const override { return c.rank(); }
    int size() const override { return c.size(); }
    std::string name() const override { return c.name(); }
    void all_reduce(any_tensor t, reduce_op op) override {
      std::visit([&](auto* p) { c.all_reduce(*p, op); }, t);
    }
    void broadcast(any_tensor t, int root) override {
      std::visit([&](auto* p) { c.broadcast(*p, root); }, t);
    }
    void all_gather(any_input in, any_tensor out) override {
      std::visit([&](auto* o) { c.all_gather(*std::get<const std::remove_pointer_t<decltype(o)>*>(in), *o); }, out);
    }
    void reduce_scatter(any_input in, any_tensor out, reduce_op op) override {
      std::visit([&](auto* o) { c.reduce_scatter(*std::get<const std::remove_pointer_t<decltype(o)>*>(in), *o, op); },
                 out);
    }
    void all_to_all(any_input in, any_tensor out) override {
      std::visit([&](auto* o) { c.all_to_all(*std::get<const std::remove_pointer_t<decltype(o)>*>(in), *o); }, out);
    }
    void barrier() override { c.barrier(); }
    request start_all_reduce(any_tensor t, reduce_op op) override {
      const native q = std::visit([&](auto* p) { return c.start_all_reduce(*p, op); }, t);
      request out{};
      std::memcpy(out.bytes, &q, sizeof(native));
      return out;
    }
    bool test(request& q) override {
      native n;
      std::memcpy(&n, q.bytes, sizeof(native));
      const bool done = c.test(n);
      std::memcpy(q.bytes, &n, sizeof(native));
      return done;
    }
    void wait(request& q) override {
      native n;
      std::memcpy(&n, q.bytes, sizeof(native));
      c.wait(n);
      std::memcpy(q.bytes, &n, sizeof(native));
    }
    void abort(const std::string& why) override { c.abort(why); }
    void recover() override { c.recover(); }
  };

  std::unique_ptr<concept_t> self_;
};

}  // namespace dp::inline DP_ABI::dist
