// dp::parallel<Model>: one model trained on many devices of one process.
//
//   dp::parallel<classifier> par{classifier{}, dp::devices()};
//   auto opt = dp::optim::adamw(par, {.lr = 1e-3});
//   double loss = par.backward(nn::cross_entropy, x, labels);   // x split on dim 0 over the devices
//   opt.step();                                                  // the same update on every replica
//
// One replica (an nn::trainer) per device; replica 0 holds the canonical model (par.model()), the
// others start as copies of it. Arguments are scattered by rule: a tensor is split on dimension 0
// (uneven shards allowed, empty ones too), dp::replicated(v) goes to every replica; any other type
// is a compile error. Gradients are summed across replicas with each replica's loss weighted by its
// share of the batch, so they equal the single-device gradients of the whole batch; buffers are
// synchronised by their declared policy. On one device parallel is the bare trainer.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include <dp/core/device.hpp>
#include <dp/core/tensor.hpp>
#include <dp/dist/bucket.hpp>
#include <dp/dist/communicator.hpp>
#include <dp/dist/hierarchical.hpp>
#include <dp/dist/local.hpp>
#include <dp/dist/mpi.hpp>
#include <dp/dist/nccl.hpp>
#include <dp/dist/session.hpp>
#include <dp/dist/workers.hpp>
#include <dp/nn/module.hpp>
#include <dp/nn/reflect.hpp>
#include <dp/nn/replica_access.hpp>
#include <dp/nn/trainer.hpp>

namespace dp::inline DP_ABI {

/// An argument every replica receives whole (a tensor is copied to each replica's device).
template <class V>
struct replicated_t {
  V value;
};
template <class V>
replicated_t<std::decay_t<V>> replicated(V&& v) {
  return {std::forward<V>(v)};
}

struct parallel_options {
  std::size_t bucket_bytes = std::size_t{25} << 20;       ///< gradient bucket size (about 25 MiB)
  std::size_t first_bucket_bytes = std::size_t{1} << 20;  ///< the first bucket is small
  dist::communicator_options comm{};
};

namespace detail {

template <class X>
struct is_replicated : std::false_type {};
template <class V>
struct is_replicated<replicated_t<V>> : std::true_type {};

// The compiler prints these types' template arguments: the argument's position and its type.
template <std::size_t Position, class Argument>
struct no_scatter_rule {
  static_assert(nn::detail::always_false<Argument>,
                "dp: an argument of dp::parallel has no scatter rule (its position and type are the template "
                "arguments above): pass a batched dp::tensor (split on dimension 0) or wrap it in dp::replicated(v) "
                "(the same value on every replica)");
  static constexpr bool value = false;
};
template <class Output>
struct no_gather_rule {
  static_assert(nn::detail::always_false<Output>,
                "dp: the model's forward returns a type dp::parallel cannot gather (the template argument above): "
                "return a dp::tensor (concatenated on dimension 0; a 0-d tensor is a loss, averaged over samples), "
                "or a tuple or struct of those");
  static constexpr bool value = false;
};

template <std::size_t I, class X>
constexpr bool scatterable() {
  using Xr = std::remove_cvref_t<X>;
  if constexpr (tensor_type<Xr> || is_replicated<Xr>::value) {
    return true;
  } else {
    return no_scatter_rule<I, Xr>::value;
  }
}

/// A readable name of T for messages: "classifier", "nn::sequential<nn::linear<64, 128, float, true>, ...>".
template <class T>
std::string type_name() {
  const std::string_view p = __PRETTY_FUNCTION__;
  const auto b = p.find("T = ") + 4;
  std::string n(p.substr(b, p.find_first_of(";]", b) - b));
  for (const std::string_view noise : {"dp::cpu_abi::", "dp::cuda_abi::", "(anonymous namespace)::", "{anonymous}::"}) {
    for (auto at = n.find(noise); at != std::string::npos; at = n.find(noise)) {
      n.erase(at, noise.size());
    }
  }
  return n;
}

/// The collectives dp::parallel needs, behind one interface so local and NCCL replicas share code.
struct replica_comm {
  virtual ~replica_comm() = default;
  virtual void all_reduce(tensor<float>& t, dist::reduce_op op) = 0;
  virtual void all_reduce(tensor<double>& t, dist::reduce_op op) = 0;
  virtual void broadcast(tensor<float>& t, int root) = 0;
  virtual void broadcast(tensor<double>& t, int root) = 0;
  virtual void broadcast(tensor<std::int64_t>& t, int root) = 0;
  virtual void abort(const std::string& why) = 0;
  virtual void recover() = 0;
  virtual std::string name() const = 0;
};

template <class C>
struct replica_comm_of final : replica_comm {
  C c;
  explicit replica_comm_of(C x) : c(std::move(x)) {}
  void all_reduce(tensor<float>& t, dist::reduce_op op) override { c.all_reduce(t, op); }
  void all_reduce(tensor<double>& t, dist::reduce_op op) override { c.all_reduce(t, op); }
  void broadcast(tensor<float>& t, int root) override { c.broadcast(t, root); }
  void broadcast(tensor<double>& t, int root) override { c.broadcast(t, root); }
  void broadcast(tensor<std::int64_t>& t, int root) override { c.broadcast(t, root); }
  void abort(const std::string& why) override {
    if constexpr (requires { c.abort(why); }) {
      c.abort(why);
    }
  }
  void recover() override {
    if constexpr (requires { c.recover(); }) {
      c.recover();
    }
  }
  std::string name() const override { return c.name(); }
};

/// A replica's buffers, found once (their storage never moves), with their sync policy.
template <class T>
struct buffer_ref {
  tensor<T> t;
  nn::buffer_sync sync;
};

}  // namespace detail

template <class Model>
class parallel {
  static_assert(nn::detail::check_model<Model>(),
                "dp: parallel<Model> needs a dp::nn::module: a library module or an aggregate of modules, "
                "nn::parameter and nn::buffer members");

 public:
  using model_type = Model;
  using value_type = typename nn::trainer<Model>::value_type;
  using T = value_type;

  /// One replica per device; the model's parameters and buffers are copied to every device.
  parallel(Model model, std::vector<device> devices, parallel_options o = {})
      : parallel(std::move(model), std::move(devices), o, nullptr) {}

  /// One replica per rank of `world`, on the host (GPUs across processes are the NCCL milestone).
  /// Rank 0's parameters and buffers are broadcast to every rank, after checking that every rank
  /// holds the same model. Each rank passes its own share of every global batch (a loader made
  /// with `world` yields it); gradients and losses are those of the global batch.
  parallel(Model model, dist::session& world, parallel_options o = {})
      : parallel(std::move(model), world, {cpu(0)}, o) {}
  /// Ranks x local devices: each rank scatters its share over `local` (the same results as one
  /// process with ranks x local replicas).
  parallel(Model model, dist::session& world, std::vector<device> local, parallel_options o = {})
      : parallel(std::move(model), std::move(local), o, &world) {}

 private:
  parallel(Model model, std::vector<device> devices, parallel_options o, dist::session* world)
      : devices_(std::move(devices)), opts_(o) {
    validate_devices();
    if (world != nullptr) {
      world_rank_ = world->rank();
      world_size_ = world->size();
    }
    const int n = static_cast<int>(devices_.size());
    replicas_.push_back(std::make_unique<nn::trainer<Model>>(std::move(model), devices_[0]));
    for (int i = 1; i < n; ++i) {
      replicas_.push_back(std::make_unique<nn::trainer<Model>>(Model(replicas_[0]->model()), devices_[i]));
    }
    make_communicators(world);
    const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    // Host workers share the cores of their machine with the other ranks on it.
    const int processes_here = world != nullptr ? world->local_size() : 1;
    const int budget = devices_[0].is_cpu() ? std::max(1, std::min(num_threads(), cores) / (n * processes_here)) : 1;
    threads_ = std::make_unique<dist::detail::replica_threads>(n, budget);
    buckets_ = dist::make_buckets(replicas_[0]->layout(), detail::replica_access::flat_grads(*replicas_[0]).numel(),
                                  sizeof(T), opts_.bucket_bytes, opts_.first_bucket_bytes);
    for (const auto& b : buckets_) {
      bucket_ranges_.emplace_back(b.begin, b.end);
    }
    hook_ = {bucket_ranges_, this, [](void* self, int b) { static_cast<parallel*>(self)->start_bucket(b); },
             [](void* self) { static_cast<parallel*>(self)->poll_buckets(); }};
#if DP_HAS_MPI
    in_flight_.resize(buckets_.size());
#endif
    for (auto& r : replicas_) {
      collect_buffers(*r);
    }
    shard_begin_.resize(devices_.size() + 1);
    losses_.resize(devices_.size());
    if (world_size_ > 1) {
      // Per-step exchange buffers, made once: a steady step allocates nothing.
      count_mine_ = empty<std::int64_t>({1});
      counts_ = empty<std::int64_t>({world_size_});
      loss_sum_ = empty<double>({1});
      join_world();
    }
  }

 public:
  /// Wraps a trainer: its model (and step count) move into the replicas, and the trainer is retired,
  /// so an optimizer made from it refuses its next step instead of updating a model nobody trains.
  parallel(nn::trainer<Model>&& t, std::vector<device> devices, parallel_options o = {})
      : parallel(Model(t.model()), std::move(devices), o) {
    restore_steps(t.steps());
    detail::replica_access::retire(t);
  }
  parallel(const parallel&) = delete;
  parallel& operator=(const parallel&) = delete;

  /// The canonical model (replica 0's). There is no way to reach another replica's parameters.
  const Model& model() const noexcept { return replicas_[0]->model(); }
  /// The devices the replicas run on.
  const std::vector<device>& devices() const noexcept { return devices_; }
  std::size_t replica_count() const noexcept { return replicas_.size(); }

  void train() noexcept {
    for (auto& r : replicas_) {
      r->train();
    }
  }
  void eval() noexcept {
    for (auto& r : replicas_) {
      r->eval();
    }
  }
  bool training() const noexcept { return replicas_[0]->training(); }

  /// Forward on every replica: tensors scattered on dimension 0, outputs gathered on devices()[0].
  template <class... Args>
  auto operator()(const Args&... args) {
    check_scatter(std::index_sequence_for<Args...>{}, args...);
    const index_t n = batch_size(args...);
    // Across processes each rank computes the outputs of its own share; in training mode the
    // buffers are then synchronised over every rank, weighted by the global batch.
    if (world_size_ > 1 && training()) {
      global_batch(n);
    }
    // The bare model on one device (no scatter, no gather, no copy), and for an empty batch on any
    // number of devices, so that its result does not depend on the device count.
    if (replicas_.size() == 1 || n == 0) {
      auto out = (*replicas_[0])(whole_arg(args)...);
      if (world_size_ > 1 && training()) {
        shard(n);
        auto sync = [&](int i) { sync_buffers(i); };
        run(sync);
      }
      return out;
    }
    shard(n);
    using Out = decltype((*replicas_[0])(shard_arg(0, args)...));
    std::vector<Out> outs(replicas_.size());
    auto job = [&](int i) {
      if (count(i) > 0) {
        outs[static_cast<std::size_t>(i)] = (*replicas_[static_cast<std::size_t>(i)])(shard_arg(i, args)...);
      }
    };
    run(job);
    if (training()) {
      auto sync = [&](int i) { sync_buffers(i); };
      run(sync);
    }
    return gather(outs);
  }

  /// One step's gradients on every replica, summed across replicas (unless the last argument is
  /// dp::no_sync, which accumulates locally). Returns the loss of the whole batch.
  template <class Loss, class... Args>
  double backward(const Loss& loss, const Args&... args) {
    auto all = std::forward_as_tuple(args...);
    constexpr std::size_t n = sizeof...(Args);
    if constexpr (n > 0 && std::is_same_v<std::remove_cvref_t<std::tuple_element_t<n - 1, decltype(all)>>, no_sync_t>) {
      return [&]<std::size_t... I>(std::index_sequence<I...>) {
        return step(loss, true, std::get<I>(all)...);
      }(std::make_index_sequence<n - 1>{});
    } else {
      return step(loss, false, args...);
    }
  }

  // ---------------------------------------------------------------- for optimizers
  const std::vector<nn::param_entry>& layout() const noexcept { return replicas_[0]->layout(); }
  nn::grad_state gradients() const noexcept { return replicas_[0]->gradients(); }
  std::uint64_t steps() const noexcept { return replicas_[0]->steps(); }

  /// The communicator kind ("local communicator", "NCCL communicator").
  std::string communicator_name() const { return comms_[0]->name(); }

  friend std::ostream& operator<<(std::ostream& os, const parallel& p) {
    const index_t params = nn::parameter_count(p.model());
    os << "parallel<" << detail::type_name<Model>() << ">: ";
    if (p.world_size_ > 1) {
      os << p.world_size_ << " ranks x ";
    }
    os << p.replicas_.size() << (p.replicas_.size() == 1 ? " replica on" : " replicas on");
    for (auto d : p.devices_) {
      os << ' ' << d;
    }
    std::string digits = std::to_string(params), grouped;
    for (std::size_t i = 0; i < digits.size(); ++i) {
      if (i && (digits.size() - i) % 3 == 0) {
        grouped += ',';
      }
      grouped += digits[i];
    }
    const double kib = static_cast<double>(params) * sizeof(T) / 1024.0;
    os << ", " << grouped << " parameters (" << static_cast<index_t>(kib + 0.5) << " KiB), " << p.comms_[0]->name();
    return os;
  }

 private:
  // What reaches every replica is for optimizers and checkpoints only (dp::detail::replica_access).
  friend struct dp::detail::replica_access;
  void set_gradients(nn::grad_state s) noexcept {
    for (auto& r : replicas_) {
      detail::replica_access::set_gradients(*r, s);
    }
  }
  /// Calls f(i, parameters, gradients) on every replica's thread at once.
  template <class F>
  void for_each_replica(F&& f) {
    auto job = [&](int i) {
      auto& r = *replicas_[static_cast<std::size_t>(i)];
      f(static_cast<std::size_t>(i), detail::replica_access::flat_params(r), detail::replica_access::flat_grads(r));
    };
    run(job);
  }
  /// Applies `f` to every replica's model, one after the other (loading weights keeps replicas equal).
  template <class F>
  void update_model(F&& f) {
    for (auto& r : replicas_) {
      detail::replica_access::update_model(*r, f);
    }
  }
  void restore_steps(std::uint64_t steps) noexcept {
    for (auto& r : replicas_) {
      detail::replica_access::restore_steps(*r, steps);
    }
  }

  template <class Loss, class... Args>
  double step(const Loss& loss, bool local_only, const Args&... args) {
    check_scatter(std::index_sequence_for<Args...>{}, args...);
    const index_t n = batch_size(args...);
    global_batch(n);       // across ranks: every rank learns the global batch (a collective)
    if (global_n_ == 0) {  // the same error on every rank and every device count
      nn::detail::require_samples(unwrap(std::get<sizeof...(Args) - 1>(std::forward_as_tuple(args...))).shape());
    }
    if (replicas_.size() == 1 && world_size_ == 1) {  // the bare trainer
      return detail::replica_access::step_grads(*replicas_[0], loss, local_only, T(1), index_t{0},
                                                static_cast<const nn::detail::grad_ready_hook*>(nullptr),
                                                whole_arg(args)...);
    }
    shard(n);
    const bool mean = nn::detail::reduction_of(loss) == nn::reduction::mean;
    const bool accumulating = replicas_[0]->gradients() == nn::grad_state::local;
    // One replica per rank: each bucket's all-reduce starts as soon as backward has finished it.
    const bool overlap = overlapped() && !local_only;
    auto job = [&](int i) {
      auto& r = *replicas_[static_cast<std::size_t>(i)];
      const index_t c = count(i);
      const nn::detail::grad_ready_hook* hook = overlap ? &hook_ : nullptr;
      if (c > 0) {
        const T scale = mean ? static_cast<T>(static_cast<double>(c) / static_cast<double>(global_n_)) : T(1);
        losses_[static_cast<std::size_t>(i)] =
            static_cast<double>(scale) *
            detail::replica_access::step_grads(r, loss, local_only, scale,
                                               global_offset_ + shard_begin_[static_cast<std::size_t>(i)], hook,
                                               shard_arg(i, args)...);
      } else {  // no samples here: contribute nothing, but take part in every collective
        losses_[static_cast<std::size_t>(i)] = 0;
        if (!accumulating) {
          tensor<T>(detail::replica_access::flat_grads(r)).fill(T(0));
        }
        detail::replica_access::set_gradients(r, local_only ? nn::grad_state::local : nn::grad_state::complete);
      }
      if (overlap) {
        if (c == 0) {  // nothing computed here: every bucket is final (zero) at once
          for (int b = 0; b < static_cast<int>(buckets_.size()); ++b) {
            start_bucket(b);
          }
        }
        finish_buckets();
      } else if (!local_only) {
        reduce_gradients(i);
      }
      if (r.training()) {
        sync_buffers(i);
      }
    };
    run(job);
    double total = 0;
    for (double l : losses_) {
      total += l;
    }
#if DP_HAS_MPI
    if (world_size_ > 1) {  // the global loss: every rank's share of it, summed
      loss_sum_.fill(total);
      world_comm_->all_reduce(loss_sum_, dist::reduce_op::sum);
      total = loss_sum_.item();
    }
#endif
    return total;
  }

  /// Sets the global batch size and this rank's first sample in it: the local batch in one process,
  /// every rank's count gathered across processes.
  void global_batch(index_t n) {
    global_n_ = n;
    global_offset_ = 0;
#if DP_HAS_MPI
    if (world_size_ > 1) {
      count_mine_.fill(n);
      world_comm_->all_gather(count_mine_, counts_);
      const std::int64_t* counts = counts_.data();
      global_n_ = 0;
      for (int r = 0; r < world_size_; ++r) {
        if (r == world_rank_) {
          global_offset_ = global_n_;
        }
        global_n_ += counts[r];
      }
    }
#endif
  }

  /// Whether gradients travel while backward runs: one replica per rank of several, over MPI.
  bool overlapped() const noexcept {
#if DP_HAS_MPI
    return world_size_ > 1 && replicas_.size() == 1;
#else
    return false;
#endif
  }
  /// Starts bucket b's all-reduce (called by backward's hook as b becomes final, in bucket order).
  void start_bucket(int b) {
#if DP_HAS_MPI
    const auto& bk = buckets_[static_cast<std::size_t>(b)];
    tensor<T> part = detail::replica_access::flat_grads(*replicas_[0]).slice(0, bk.begin, bk.end);
    in_flight_[static_cast<std::size_t>(b)] = world_comm_->start_all_reduce(part, dist::reduce_op::sum);
    ++started_;
#else
    (void)b;
#endif
  }
  /// Lets the buckets in flight progress (MPI moves data inside its calls).
  void poll_buckets() {
#if DP_HAS_MPI
    while (finished_ < started_ && world_comm_->test(in_flight_[static_cast<std::size_t>(finished_)])) {
      ++finished_;
    }
#endif
  }
  /// Waits for every bucket of the step.
  void finish_buckets() {
#if DP_HAS_MPI
    DP_CHECK(started_ == static_cast<int>(buckets_.size()), runtime_error, "dp: parallel: backward announced ",
             started_, " of ", buckets_.size(), " gradient buckets");
    for (auto& q : in_flight_) {
      world_comm_->wait(q);
    }
    started_ = finished_ = 0;
#endif
  }

  /// Sums the gradients of every replica, bucket by bucket (each replica calls this on its thread).
  void reduce_gradients(int i) {
    auto& comm = *comms_[static_cast<std::size_t>(i)];
    const tensor<T>& g = detail::replica_access::flat_grads(*replicas_[static_cast<std::size_t>(i)]);
    for (const auto& b : buckets_) {
      tensor<T> part = g.slice(0, b.begin, b.end);
      comm.all_reduce(part, dist::reduce_op::sum);
    }
  }

  /// Buffers with the mean policy become the mean over replicas weighted by each replica's share of
  /// the batch (replicas without samples did not update theirs); the others take replica 0's value.
  void sync_buffers(int i) {
    auto& comm = *comms_[static_cast<std::size_t>(i)];
    const index_t total = world_size_ > 1 ? global_n_ : shard_begin_.back();
    const double w = total > 0 ? static_cast<double>(count(i)) / static_cast<double>(total) : 0.0;
    auto& refs = buffers_[static_cast<std::size_t>(i)];
    for (auto& b : refs.f) {
      sync_one(comm, b, w);
    }
    for (auto& b : refs.d) {
      sync_one(comm, b, w);
    }
    for (auto& b : refs.i) {
      comm.broadcast(b.t, 0);
    }
  }
  template <class V>
  static void sync_one(detail::replica_comm& comm, detail::buffer_ref<V>& b, double w) {
    if (b.sync == nn::buffer_sync::mean) {
      b.t *= static_cast<V>(w);
      comm.all_reduce(b.t, dist::reduce_op::sum);
    } else {
      comm.broadcast(b.t, 0);
    }
  }

  /// Runs job(i) on every replica; a failing replica aborts the collectives the others wait in.
  /// The first failure is rethrown as it was; the replicas it released report "aborted" errors.
  template <class Job>
  void run(Job& job) {
    std::exception_ptr first;
    std::mutex m;
    auto guarded = [&](int i) {
      try {
        job(i);
      } catch (const std::exception& e) {
        {
          std::lock_guard lock(m);
          if (!first) {
            first = std::current_exception();
          }
        }
        comms_[static_cast<std::size_t>(i)]->abort(
            detail::concat("replica ", i, " (", devices_[static_cast<std::size_t>(i)], ") failed: ", e.what()));
        throw;
      }
    };
    try {
      threads_->run(guarded);
    } catch (...) {
      comms_[0]->recover();
      set_gradients(nn::grad_state::none);
      if (first) {
        std::rethrow_exception(first);
      }
      throw;
    }
  }

  // ---------------------------------------------------------------- scatter / gather
  template <std::size_t... I, class... Args>
  static void check_scatter(std::index_sequence<I...>, const Args&...) {
    static_assert((detail::scatterable<I, Args>() && ...));
  }

  template <class... Args>
  index_t batch_size(const Args&... args) const {
    index_t n = -1;
    auto one = [&](const auto& a) {
      using A = std::remove_cvref_t<decltype(a)>;
      if constexpr (tensor_type<A>) {
        DP_CHECK(a.rank() >= 1, shape_error, "dp: parallel: a scattered tensor needs a batch dimension, got shape ",
                 a.shape(), "; wrap it in dp::replicated(...) to give it whole to every replica");
        DP_CHECK(n < 0 || a.shape()[0] == n, shape_error,
                 "dp: parallel: scattered tensors disagree on the batch size (", n, " and ", a.shape()[0], ", shape ",
                 a.shape(), ")");
        n = a.shape()[0];
      }
    };
    (one(args), ...);
    DP_CHECK(n >= 0, value_error, "dp: parallel: at least one argument must be a batched tensor");
    return n;
  }

  /// Replica i gets samples [begin_i, begin_{i+1}): the first n % R replicas one more.
  void shard(index_t n) {
    const index_t r = static_cast<index_t>(replicas_.size());
    shard_begin_[0] = 0;
    for (index_t i = 0; i < r; ++i) {
      shard_begin_[static_cast<std::size_t>(i + 1)] = shard_begin_[static_cast<std::size_t>(i)] + n / r + (i < n % r);
    }
  }
  index_t count(int i) const {
    return shard_begin_[static_cast<std::size_t>(i) + 1] - shard_begin_[static_cast<std::size_t>(i)];
  }

  template <class V>
  tensor<V> to_replica(const tensor<V>& t, int i) const {
    const device d = devices_[static_cast<std::size_t>(i)];
    if (t.device() == d) {
      return t;
    }
    if (t.device().is_cpu() && d.is_cpu()) {
      return detail::tensor_access::on_host_worker(t, d);  // host workers share memory
    }
    return t.to(d);
  }

  template <class A>
  static const auto& unwrap(const A& a) {
    if constexpr (detail::is_replicated<A>::value) {
      return a.value;
    } else {
      return a;  // a tensor (anything else was rejected by check_scatter)
    }
  }

  /// An argument given whole to replica 0 (one device): on its device, a copy only when it is on
  /// another kind of device (host memory is every host worker's).
  template <class A>
  auto whole_arg(const A& a) const {
    if constexpr (tensor_type<A>) {
      return to_replica(a, 0);
    } else {
      return shard_arg(0, a);  // dp::replicated
    }
  }

  template <class A>
  auto shard_arg(int i, const A& a) const {
    if constexpr (tensor_type<A>) {
      return to_replica(
          a.slice(0, shard_begin_[static_cast<std::size_t>(i)], shard_begin_[static_cast<std::size_t>(i) + 1]), i);
    } else if constexpr (detail::is_replicated<A>::value) {
      if constexpr (tensor_type<decltype(a.value)>) {
        return to_replica(a.value, i);
      } else {
        return a.value;
      }
    } else {
      return a;  // rejected by check_scatter
    }
  }

  template <class Out>
  Out gather(std::vector<Out>& outs) const {
    if constexpr (tensor_type<Out>) {
      using V = typename Out::value_type;
      int first = -1;
      for (std::size_t i = 0; i < outs.size(); ++i) {
        if (count(static_cast<int>(i)) > 0) {
          first = static_cast<int>(i);
          break;
        }
      }
      DP_CHECK(first >= 0, value_error, "dp: parallel: an empty batch has no output");
      const Out& proto = outs[static_cast<std::size_t>(first)];
      if (proto.rank() == 0) {  // a per-replica mean (a loss): the mean over all samples
        const index_t total = shard_begin_.back();
        double acc = 0;
        for (std::size_t i = 0; i < outs.size(); ++i) {
          if (count(static_cast<int>(i)) > 0) {
            acc += static_cast<double>(outs[i].item()) * static_cast<double>(count(static_cast<int>(i))) /
                   static_cast<double>(total);
          }
        }
        return full<V>({}, static_cast<V>(acc), devices_[0]);
      }
      dp::shape s = proto.shape();
      s[0] = shard_begin_.back();
      Out out = empty<V>(s, devices_[0]);
      for (std::size_t i = 0; i < outs.size(); ++i) {
        if (count(static_cast<int>(i)) == 0) {
          continue;
        }
        const tensor<V>& o = outs[i];
        DP_CHECK(o.shape()[0] == count(static_cast<int>(i)), shape_error, "dp: parallel: replica ", i, "'s output has ",
                 o.shape()[0], " rows for ", count(static_cast<int>(i)),
                 " samples: outputs must keep the batch on dimension 0 to be gathered");
        tensor<V> src = o.device().is_cpu() && devices_[0].is_cpu()
                            ? detail::tensor_access::on_host_worker(o, devices_[0])
                            : o.to(devices_[0]);
        out.slice(0, shard_begin_[i], shard_begin_[i + 1]) = src;
      }
      return out;
    } else if constexpr (requires { std::tuple_size<Out>::value; }) {
      return [&]<std::size_t... K>(std::index_sequence<K...>) {
        return Out{gather_field<K>(outs)...};
      }(std::make_index_sequence<std::tuple_size_v<Out>>{});
    } else if constexpr (std::is_aggregate_v<Out> && std::is_class_v<Out>) {
      constexpr std::size_t n = nn::detail::reflect::field_count<Out>();
      return [&]<std::size_t... K>(std::index_sequence<K...>) {
        return Out{gather_member<K, n>(outs)...};
      }(std::make_index_sequence<n>{});
    } else {
      static_assert(detail::no_gather_rule<Out>::value);
      return Out{};
    }
  }
  template <std::size_t K, class Out>
  auto gather_field(std::vector<Out>& outs) const {
    using F = std::remove_cvref_t<std::tuple_element_t<K, Out>>;
    std::vector<F> parts;
    for (auto& o : outs) {
      parts.push_back(std::get<K>(o));
    }
    return gather(parts);
  }
  template <std::size_t K, std::size_t N, class Out>
  auto gather_member(std::vector<Out>& outs) const {
    using F = std::remove_cvref_t<std::tuple_element_t<K, decltype(nn::detail::reflect::tie_fields<N>(outs[0]))>>;
    std::vector<F> parts;
    for (auto& o : outs) {
      parts.push_back(std::get<K>(nn::detail::reflect::tie_fields<N>(o)));
    }
    return gather(parts);
  }

  // ---------------------------------------------------------------- setup
  void validate_devices() {
    DP_CHECK(!devices_.empty(), value_error, "dp: parallel needs at least one device");
    auto list = [&] {
      std::string s = "{";
      for (std::size_t i = 0; i < devices_.size(); ++i) {
        s += (i ? ", " : "") + devices_[i].str();
      }
      return s + "}";
    };
    for (std::size_t i = 0; i < devices_.size(); ++i) {
      require_usable(devices_[i]);
      DP_CHECK(devices_[i].kind == devices_[0].kind, device_error, "dp: parallel: the device list ", list(),
               " mixes host workers and GPUs; use one kind");
      for (std::size_t j = 0; j < i; ++j) {
        DP_CHECK(devices_[i] != devices_[j], value_error, "dp: parallel: device ", devices_[i],
                 " appears twice in the device list ", list(),
                 "; each replica needs its own device (two models on one device are two parallel objects)");
      }
    }
  }

  void make_communicators(dist::session* world) {
    const int n = static_cast<int>(devices_.size());
    if (world_size_ > 1) {
#if DP_HAS_MPI
      DP_CHECK(devices_[0].is_cpu(), device_error,
               "dp: parallel over processes runs on host workers for now (GPUs across processes need NCCL "
               "bootstrapped over MPI, not yet there)");
      world_comm_.emplace(world->make_communicator(opts_.comm));
      using hier = dist::hierarchical_communicator<dist::local_communicator, dist::mpi_communicator>;
      auto locals = dist::make_local_communicators(n, opts_.comm);
      for (int i = 0; i < n; ++i) {
        std::optional<dist::mpi_communicator> global;
        if (i == 0) {
          global.emplace(world->make_communicator(opts_.comm));
        }
        comms_.push_back(std::make_unique<detail::replica_comm_of<hier>>(
            hier(std::move(locals[static_cast<std::size_t>(i)]), std::move(global), world_rank_, world_size_)));
      }
      return;
#else
      (void)world;  // a session without MPI has one rank
#endif
    }
    if (devices_[0].is_cpu()) {
      for (auto& c : dist::make_local_communicators(n, opts_.comm)) {
        comms_.push_back(std::make_unique<detail::replica_comm_of<dist::local_communicator>>(std::move(c)));
      }
      return;
    }
#if DP_HAS_CUDA && DP_HAS_NCCL
    std::vector<int> ids;
    for (auto d : devices_) {
      ids.push_back(d.index);
    }
    for (auto& c : dist::make_nccl_communicators(ids)) {
      comms_.push_back(std::make_unique<detail::replica_comm_of<dist::nccl_communicator>>(std::move(c)));
    }
#else
    DP_CHECK(n == 1, device_error, "dp: parallel over several GPUs needs NCCL: compile with nvcc and link dp::nccl");
    for (auto& c : dist::make_local_communicators(1, opts_.comm)) {
      comms_.push_back(std::make_unique<detail::replica_comm_of<dist::local_communicator>>(std::move(c)));
    }
#endif
  }

  /// Every rank must hold the same model (names, element types, shapes); then rank 0's parameters
  /// and buffers become everyone's. A difference is the same error on every rank, naming it.
  void join_world() {
#if DP_HAS_MPI
    std::string sig = detail::concat("local replicas ", replicas_.size(), "\n");
    const std::string type = sizeof(T) == 4 ? "float" : "double";
    for (const auto& e : replicas_[0]->layout()) {
      sig += dp::detail::concat("parameter ", e.name, " ", type, " ", e.shape, "\n");
    }
    nn::for_each_buffer(replicas_[0]->model(), [&](const std::string& name, const auto& b) {
      using V = typename std::remove_cvref_t<decltype(b)>::value_type;
      const char* vt = std::is_same_v<V, float> ? "float" : std::is_same_v<V, double> ? "double" : "int64";
      sig += dp::detail::concat("buffer ", name, " ", vt, " ", b.shape(), "\n");
    });
    const std::vector<std::string> all = all_gather_text(sig);
    for (int r = 1; r < world_size_; ++r) {
      if (all[static_cast<std::size_t>(r)] != all[0]) {
        throw value_error(detail::concat("dp: parallel: the ranks hold different models: ",
                                         first_difference(all[0], all[static_cast<std::size_t>(r)], r),
                                         "; every rank must build the same model (the same code and sizes)"));
      }
    }
    auto job = [&](int i) {
      auto& r = *replicas_[static_cast<std::size_t>(i)];
      tensor<T> params = detail::replica_access::flat_params(r);
      comms_[static_cast<std::size_t>(i)]->broadcast(params, 0);
      auto& refs = buffers_[static_cast<std::size_t>(i)];
      for (auto& b : refs.f) {
        comms_[static_cast<std::size_t>(i)]->broadcast(b.t, 0);
      }
      for (auto& b : refs.d) {
        comms_[static_cast<std::size_t>(i)]->broadcast(b.t, 0);
      }
      for (auto& b : refs.i) {
        comms_[static_cast<std::size_t>(i)]->broadcast(b.t, 0);
      }
    };
    run(job);
#endif
  }

#if DP_HAS_MPI
  /// Every rank's text, gathered on every rank (lengths first, then the bytes padded to one size).
  std::vector<std::string> all_gather_text(const std::string& mine) {
    tensor<std::int64_t> len = full<std::int64_t>({1}, static_cast<std::int64_t>(mine.size()));
    tensor<std::int64_t> lens = empty<std::int64_t>({world_size_});
    world_comm_->all_gather(len, lens);
    const auto sizes = lens.to_vector();
    const std::int64_t longest = *std::max_element(sizes.begin(), sizes.end());
    const index_t words = (longest + 7) / 8;
    tensor<std::int64_t> in = zeros<std::int64_t>({std::max<index_t>(words, 1)});
    std::memcpy(in.data(), mine.data(), mine.size());
    tensor<std::int64_t> out = empty<std::int64_t>({in.numel() * world_size_});
    world_comm_->all_gather(in, out);
    std::vector<std::string> texts;
    for (int r = 0; r < world_size_; ++r) {
      const char* p = reinterpret_cast<const char*>(out.data() + r * in.numel());
      texts.emplace_back(p, static_cast<std::size_t>(sizes[static_cast<std::size_t>(r)]));
    }
    return texts;
  }
  /// The first line where rank r's model description differs from rank 0's.
  static std::string first_difference(const std::string& a, const std::string& b, int r) {
    std::size_t pa = 0, pb = 0;
    for (;;) {
      const std::size_t ea = a.find('\n', pa), eb = b.find('\n', pb);
      const std::string la = ea == std::string::npos ? std::string() : a.substr(pa, ea - pa);
      const std::string lb = eb == std::string::npos ? std::string() : b.substr(pb, eb - pb);
      if (la != lb) {
        return detail::concat("rank 0 has ", la.empty() ? std::string("nothing") : "'" + la + "'", " where rank ", r,
                              " has ", lb.empty() ? std::string("nothing") : "'" + lb + "'");
      }
      pa = ea + 1;
      pb = eb + 1;
    }
  }
#endif

  struct replica_buffers {
    std::vector<detail::buffer_ref<float>> f;
    std::vector<detail::buffer_ref<double>> d;
    std::vector<detail::buffer_ref<std::int64_t>> i;
  };
  void collect_buffers(nn::trainer<Model>& r) {
    replica_buffers rb;
    nn::for_each_buffer(detail::replica_access::mutable_model(r), [&](const std::string&, auto& b) {
      using V = typename std::remove_cvref_t<decltype(b)>::value_type;
      const tensor<V>& t = b.value();
      if constexpr (std::is_same_v<V, float>) {
        rb.f.push_back({t, b.sync()});
      } else if constexpr (std::is_same_v<V, double>) {
        rb.d.push_back({t, b.sync()});
      } else {
        static_assert(std::is_same_v<V, std::int64_t>, "dp: buffers are float, double or int64");
        rb.i.push_back({t, b.sync()});
      }
    });
    buffers_.push_back(std::move(rb));
  }

  std::vector<device> devices_;
  parallel_options opts_;
  std::vector<std::unique_ptr<nn::trainer<Model>>> replicas_;
  std::vector<std::unique_ptr<detail::replica_comm>> comms_;
  std::unique_ptr<dist::detail::replica_threads> threads_;
  std::vector<dist::bucket> buckets_;
  std::vector<replica_buffers> buffers_;
  std::vector<index_t> shard_begin_;
  std::vector<double> losses_;
  // Across processes (a dp::dist::session of several ranks).
  int world_rank_ = 0, world_size_ = 1;
  index_t global_n_ = 0, global_offset_ = 0;  // the global batch and this rank's first sample in it
  std::vector<std::pair<index_t, index_t>> bucket_ranges_;
  nn::detail::grad_ready_hook hook_;
  int started_ = 0, finished_ = 0;            // buckets of the current step started, and found done
  tensor<std::int64_t> count_mine_, counts_;  // this rank's batch, and every rank's (all-gathered)
  tensor<double> loss_sum_;
#if DP_HAS_MPI
  std::optional<dist::mpi_communicator> world_comm_;
  std::vector<dist::mpi_communicator::request> in_flight_;
#endif
};

}  // namespace dp::inline DP_ABI
