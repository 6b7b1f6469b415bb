// dp::parallel<Model>: one model trained on many devices of one process, or on the ranks of a
// dist::session (times local devices each).
//
//   dp::parallel<classifier> par{classifier{}, dp::devices()};
//   auto opt = dp::optim::adamw(par, {.lr = 1e-3});
//   double loss = par.backward(nn::cross_entropy, x, labels);   // x split on dim 0 over the devices
//   opt.step();                                                  // the same update on every replica
//
// One replica (an nn::trainer) per device; replica 0 holds the canonical model (par.model()), the
// others start as copies of it. Arguments are scattered by rule (dist/scatter.hpp); gradients are
// summed across replicas with each replica's loss weighted by its share of the batch, so they equal
// the single-device gradients of the whole batch (dist/gradient_reducer.hpp); buffers are
// synchronised by their declared policy (dist/buffer_sync.hpp); across ranks the model is checked
// once and the global batch learnt each step (dist/ranks.hpp); the deterministic mode has its own
// step (dist/deterministic_step.hpp). On one device parallel is the bare trainer. This file composes
// those parts.
#pragma once

#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <exception>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include <dp/core/device.hpp>
#include <dp/core/replica_access.hpp>
#include <dp/core/tensor.hpp>
#include <dp/dist/buffer_sync.hpp>
#include <dp/dist/communicator.hpp>
#include <dp/dist/deterministic_step.hpp>
#include <dp/dist/gradient_reducer.hpp>
#include <dp/dist/ranks.hpp>
#include <dp/dist/replica_group.hpp>
#include <dp/dist/scatter.hpp>
#include <dp/dist/session.hpp>
#include <dp/exec/fp_env.hpp>
#include <dp/nn/module.hpp>
#include <dp/nn/reflect.hpp>
#include <dp/nn/trainer.hpp>
#include <dp/nn/trainer_access.hpp>

namespace dp::inline DP_ABI {

struct parallel_options {
  std::size_t bucket_bytes = std::size_t{25} << 20;       ///< gradient bucket size (about 25 MiB)
  std::size_t first_bucket_bytes = std::size_t{1} << 20;  ///< the first bucket is small
  dist::communicator_options comm{};
  /// Bitwise the same weights, buffers and losses for any number of workers, ranks and GPUs, for a
  /// given global batch, seed and model: the batch is computed in fixed chunks of `chunk` samples
  /// (each its own forward and backward, batch statistics per chunk) summed in one fixed tree over
  /// the chunks' positions (dist/deterministic_step.hpp), and every replica runs its host loops on
  /// one thread. Across ranks each rank's share must be whole
  /// chunks (loader_options::align = chunk). Not with dp::no_sync. See docs/parallel.md.
  bool deterministic = false;
  index_t chunk = 32;  ///< the deterministic mode's unit: samples [k chunk, (k + 1) chunk) of a batch
  /// A NaN or infinite loss is returned instead of stopping training with a dp::value_error.
  bool allow_non_finite_loss = false;
  /// Every replica checks each replayed step against a fresh trace (nn::trainer::check_trace): a
  /// debug mode that finds forward reading a changed value from outside the model.
  bool check_trace = false;
};

template <class Model>
class parallel {
  static_assert(nn::detail::check_model<Model>());  // its own errors say what is wrong

 public:
  using model_type = Model;
  using value_type = typename nn::trainer<Model>::value_type;
  using T = value_type;

  /// One replica per device; the model's parameters and buffers are copied to every device.
  parallel(Model model, std::vector<device> devices, parallel_options o = {})
      : parallel(std::move(model), std::move(devices), o, nullptr) {}

  /// One replica per rank of `world`: its host worker, or its GPU (NCCL bootstrapped over MPI).
  /// Rank 0's parameters, buffers and module settings are broadcast to every rank, after checking that every rank
  /// holds the same model. Each rank passes its own share of every global batch (a loader made
  /// with `world` yields it); gradients and losses are those of the global batch.
  parallel(Model model, dist::session& world, parallel_options o = {})
      : parallel(std::move(model), world, {world.local_devices()[0].is_cpu() ? cpu(0) : world.local_devices()[0]}, o) {}
  /// Ranks x local devices: each rank scatters its share over `local` (the same results as one
  /// process with ranks x local replicas).
  parallel(Model model, dist::session& world, std::vector<device> local, parallel_options o = {})
      : parallel(std::move(model), std::move(local), o, &world) {}

  /// Wraps a trainer: its model (and step count) move into the replicas, and the trainer is retired,
  /// so an optimizer made from it refuses its next step instead of updating a model nobody trains.
  parallel(nn::trainer<Model>&& t, std::vector<device> devices, parallel_options o = {})
      : parallel(model_of(t), std::move(devices), o) {
    restore_steps(t.steps());
    detail::trainer_access::retire(t);
  }
  parallel(const parallel&) = delete;
  parallel& operator=(const parallel&) = delete;

 private:
  /// The model of a trainer that still trains it: a retired one's went to another parallel, which
  /// trains it since (a copy would start from where that one began).
  static Model model_of(const nn::trainer<Model>& t) {
    DP_CHECK(!t.retired(), runtime_error,
             "dp: parallel: the trainer was already moved into a dp::parallel, which trains its model now; wrap "
             "each trainer once, and keep training through that parallel");
    return Model(t.model());
  }

  parallel(Model model, std::vector<device> devices, parallel_options o, dist::session* world)
      : opts_(o),
        group_(std::move(model), devices, o.comm, world, o.deterministic),
        plan_(std::move(devices)),
        reducer_(group_[0].layout(), detail::trainer_access::flat_grads(group_[0]).numel(), o.bucket_bytes,
                 o.first_bucket_bytes),
        losses_(static_cast<std::size_t>(group_.size())),
        batch_(group_.world_size()) {
    if (group_.world_size() > 1) {
      check_world();  // before this rank's own refusals: every rank takes part, and none waits for it
      // The deterministic mode's exchange is one all-to-all and all-gathers, which MPI counts in int
      // (the same model on every rank, checked above: every rank refuses).
      const index_t params = detail::trainer_access::flat_params(group_[0]).numel();
      DP_CHECK(!o.deterministic || params <= INT32_MAX, value_error, "dp: parallel: ", params,
               " parameters in deterministic mode across ranks; its exchange moves them in one MPI collective, "
               "which counts at most 2^31-1 elements (the default mode sends them in pieces)");
    }
    check_chunk(o.chunk);
    for (int i = 0; i < group_.size(); ++i) {
      buffers_.emplace_back(detail::trainer_access::mutable_model(group_[i]));
      group_[i].check_trace(o.check_trace);
    }
    if (o.deterministic) {
      deterministic_.emplace(group_, buffers_, plan_, batch_, o.chunk);
    }
    if (overlapped()) {
      reducer_.overlap(detail::trainer_access::flat_grads(group_[0]), &group_.comm(0));
    }
    if (group_.world_size() > 1) {
      broadcast_model("broadcast of rank 0's model at construction", 0);
      share_settings("broadcast of rank 0's module settings at construction", 0);
    }
  }

 public:
  /// The canonical model (replica 0's). There is no way to reach another replica's parameters.
  const Model& model() const noexcept { return group_[0].model(); }
  /// The devices the replicas run on.
  const std::vector<device>& devices() const noexcept { return group_.devices(); }
  std::size_t replica_count() const noexcept { return static_cast<std::size_t>(group_.size()); }

  void train() noexcept {
    for (int i = 0; i < group_.size(); ++i) {
      group_[i].train();
    }
  }
  void eval() noexcept {
    for (int i = 0; i < group_.size(); ++i) {
      group_[i].eval();
    }
  }
  bool training() const noexcept { return group_[0].training(); }

  /// Changes the canonical model between steps (f(Model&), as nn::trainer::edit does) and copies it
  /// (parameters, buffers and module settings) to every replica. Across processes every rank calls it, and rank 0's
  /// result becomes everyone's. If f throws, the replicas still hold one model (replica 0's, as f left it) and the
  /// error goes on, on every rank. Gradients already computed are kept: a step after the edit applies them.
  template <class F>
  void edit(F&& f) {
    non_finite_step_ = false;  // skip_step would put back buffers from before the edit
    std::exception_ptr failed;
    try {
      group_[0].edit(f);
    } catch (...) {
      failed = std::current_exception();
    }
    if (group_.size() > 1 || group_.world_size() > 1) {
      broadcast_model("broadcast of the model after edit", steps());
      share_settings("broadcast of the module settings after edit", steps());
    }
    if (group_.world_size() > 1) {  // every rank learns whether f failed on any, so all stop together
      const std::int64_t others = failures("edit's outcome", failed != nullptr);
      DP_CHECK(failed || others == 0, runtime_error, "dp: parallel: edit(f) threw on ", others,
               " other rank(s); every rank now holds rank 0's model as f left it");
    }
    if (failed) {
      std::rethrow_exception(failed);
    }
  }

  /// Forward on every replica: tensors scattered on dimension 0, outputs gathered on devices()[0].
  template <class... Args>
  auto operator()(const Args&... args) {
    if constexpr (detail::check_scatter<Args...>()) {
      return scattered_forward(args...);
    } else {
      return 0.0;  // check_scatter's message is the error
    }
  }

  /// One step's gradients on every replica, summed across replicas (unless the last argument is
  /// dp::no_sync, which accumulates locally). Returns the loss of the whole batch.
  template <class Loss, class... Args>
  double backward(const Loss& loss, const Args&... args) {
    non_finite_step_ = false;
    const double l = nn::detail::split_no_sync(
        [&](bool local_only, const auto&... a) {
          if constexpr (nn::detail::check_loss<Loss>() && detail::check_scatter<decltype(a)...>()) {
            return step(loss, local_only, a...);
          } else {
            return 0.0;  // check_loss's or check_scatter's message is the error
          }
        },
        args...);
    // The loss is the global batch's, the same on every replica and rank: all stop together.
    if (!std::isfinite(l) && !opts_.allow_non_finite_loss) {
      undo_step();
      nn::detail::require_finite_loss(l, steps() + 1, false);
    }
    non_finite_step_ = !std::isfinite(l);
    return l;
  }

  /// Drops the step whose loss backward just returned as NaN or infinite (allow_non_finite_loss) on
  /// every replica: the models as they were before it (buffers, step count), its gradients gone
  /// (under dp::no_sync, all since the optimizer's last step; earlier micro-batches' statistics stay).
  /// That loss is the global batch's, the same on every rank, so every rank skips it; any other step
  /// is refused (a finite one skipped on one rank alone would leave the ranks apart).
  void skip_step() {
    nn::detail::require_skippable(non_finite_step_, gradients());
    non_finite_step_ = false;
    undo_step();
  }

  // ---------------------------------------------------------------- for optimizers
  const std::vector<nn::param_entry>& layout() const noexcept { return group_[0].layout(); }
  nn::grad_state gradients() const noexcept { return group_[0].gradients(); }
  std::uint64_t steps() const noexcept { return group_[0].steps(); }

  /// The communicator kind ("local communicator", "NCCL communicator (2 ranks)", ...).
  std::string communicator_name() const { return group_.comm(0).name(); }

  friend std::ostream& operator<<(std::ostream& os, const parallel& p) {
    const index_t params = nn::parameter_count(p.model());
    os << "parallel<" << nn::detail::reflect::type_name<Model>() << ">: ";
    if (p.group_.world_size() > 1) {
      os << p.group_.world_size() << " ranks x ";
    }
    os << p.group_.size() << (p.group_.size() == 1 ? " replica on" : " replicas on");
    for (auto d : p.devices()) {
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
    os << ", " << grouped << " parameters (" << static_cast<index_t>(kib + 0.5) << " KiB), " << p.communicator_name();
    return os;
  }

 private:
  // What reaches every replica is for optimizers and checkpoints only (dp::detail::replica_access).
  friend struct dp::detail::replica_access;
  void set_gradients(nn::grad_state s) noexcept {
    for (int i = 0; i < group_.size(); ++i) {
      detail::replica_access::set_gradients(group_[i], s);
    }
  }
  /// Calls f(i, parameters, gradients) for every replica, on the replicas' threads (f does not wait
  /// for the other replicas: an optimizer's update is each replica's own).
  template <class F>
  void for_each_replica(F&& f) {
    auto job = [&](int i) {
      auto& r = group_[i];
      f(static_cast<std::size_t>(i), detail::trainer_access::flat_params(r), detail::trainer_access::flat_grads(r));
    };
    guarded([&] { group_.each(job, group_.size()); });
  }
  /// Applies `f` to every replica's model, one after the other (loading weights keeps replicas equal).
  /// Across processes every rank loads its own file: the ranks then check that they hold rank 0's
  /// values, so a file that differs between ranks (a stale copy on one node) is an error on every
  /// rank, not ranks training different models.
  template <class F>
  void update_model(F&& f) {
    for (int i = 0; i < group_.size(); ++i) {
      detail::replica_access::update_model(group_[i], f);
    }
    if (group_.world_size() > 1) {
      require_rank_0s_values("check that every rank loaded rank 0's values");
    }
  }
  /// Calls f(model) for every replica's model, in update_model's order.
  template <class F>
  void visit_models(F&& f) const {
    for (int i = 0; i < group_.size(); ++i) {
      detail::replica_access::visit_models(group_[i], f);
    }
  }
  /// Every replica as it was before the step that began last (buffers, step count), gradients dropped.
  void undo_step() {
    for (int i = 0; i < group_.size(); ++i) {
      detail::trainer_access::undo_step(group_[i]);
    }
  }
  void restore_steps(std::uint64_t steps) noexcept {
    for (int i = 0; i < group_.size(); ++i) {
      detail::replica_access::restore_steps(group_[i], steps);
    }
  }

  /// operator()'s forward, for arguments that all have a scatter rule.
  template <class... Args>
  auto scattered_forward(const Args&... args) {
    const index_t n = plan_.batch_size(args...);
    // Across processes each rank computes the outputs of its own share; in training mode the
    // buffers are then synchronised over every rank, weighted by the global batch.
    const bool train_mode = training();
    if (train_mode && group_.world_size() > 1) {
      const dist::detail::context_scope context("forward batch sizes", steps() + 1);
      global_batch(n, n, {.forward = true});
    }
    // Batch statistics normalise by each replica's share: outputs and running statistics would
    // depend on the device count, which this mode promises they do not (backward computes chunks).
    DP_CHECK(!opts_.deterministic || !train_mode || (group_.size() == 1 && group_.world_size() == 1) ||
                 !buffers_[0].has_mean(),
             value_error,
             "dp: parallel: in the deterministic mode a training-mode forward outside backward (par(x) with "
             "batch statistics) would normalise by each replica's share of the batch, so its outputs and running "
             "statistics would depend on the device count; call par.eval() before par(x), or train through "
             "par.backward, which computes fixed chunks");
    plan_.split(n);
    const bool sync = train_mode && (group_.world_size() > 1 || (group_.size() > 1 && n > 0));
    // Eager dropout draws on every replica as one device would: from the caller's step, by batch row.
    const std::uint64_t eager_step = nn::detail::eager_random_state().step;
    // The bare model on one device (no scatter, no gather, no copy), and for an empty batch on any
    // number of devices, so that its result does not depend on the device count.
    // A training forward that fails leaves every replica's buffers as they were.
    dist::detail::buffers_kept kept{buffers_, sync};
    if (group_.size() == 1 || n == 0) {
      const nn::detail::eager_random_scope rows(eager_step, global_offset_);
      auto out = group_[0](plan_.whole(args)...);
      if (sync) {
        auto nothing = [](int) {};
        run_replicas(nothing, {.buffers = true, .step = steps() + 1});
      }
      kept.release();
      return out;
    }
    using Out = decltype(group_[0](plan_.shard(0, args)...));
    std::vector<Out> outs(static_cast<std::size_t>(group_.size()));
    auto& parts = plan_.scatter(args...);
    std::atomic<std::uint64_t> step_after{eager_step};
    auto forward = [&](int i) {
      if (plan_.count(i) > 0) {
        const nn::detail::eager_random_scope rows(eager_step, global_offset_ + plan_.begin(i));
        outs[static_cast<std::size_t>(i)] = std::apply(group_[i], parts[static_cast<std::size_t>(i)]);
        step_after.store(nn::detail::eager_random_state().step, std::memory_order_relaxed);  // the same on each
      }
    };
    {
      const detail::scattered_parts_scope<decltype(parts)> let_go{parts};
      run_replicas(forward, {.buffers = sync, .step = steps() + 1});
    }
    nn::detail::eager_random_state().step = step_after.load(std::memory_order_relaxed);
    kept.release();
    return plan_.gather(outs);
  }

  template <class Loss, class... Args>
  double step(const Loss& loss, bool local_only, const Args&... args) {
    const index_t n = plan_.batch_size(args...);
    const std::uint64_t step_number = steps() + 1;
    const auto& target = detail::unwrap(std::get<sizeof...(Args) - 1>(std::forward_as_tuple(args...)));
    // A mean over the rows the loss scores (cross_entropy's targets other than ignore_index) is one
    // device's when every replica sums its rows and the sum is divided by the global count. The
    // bare trainer's own mean already is (and its targets, on a GPU, are not read back to count).
    const bool split = group_.size() > 1 || group_.world_size() > 1 || opts_.deterministic;
    const bool scored_mean = split && nn::detail::mean_over_scored_rows(loss);
    {
      const dist::detail::context_scope context("batch sizes", step_number);
      // Across ranks every rank learns the global batch and its scored rows (one collective).
      global_batch(n, scored_mean ? nn::detail::scored_rows(loss, target, n) : n,
                   {.training = training(), .local_only = local_only});
    }
    if (global_n_ == 0) {  // the same error on every rank and every device count
      nn::detail::require_samples(target.shape());
    }
    if (scored_mean) {
      nn::detail::require_scored_rows(loss, global_scored_, global_n_);
    }
    const dist::detail::step_batch at{.step = step_number,
                                      .local = n,
                                      .global = global_n_,
                                      .offset = global_offset_,
                                      .scored = scored_mean ? global_scored_ : 0};
    if (opts_.deterministic) {
      DP_CHECK(!local_only, value_error,
               "dp: parallel: dp::no_sync is not available in the deterministic mode (its sums are exact per step); "
               "use a larger global batch instead of accumulating");
      return (*deterministic_)(loss, at, args...);
    }
    if (group_.size() == 1 && group_.world_size() == 1) {  // the bare trainer
      return detail::trainer_access::step_grads(group_[0], loss, local_only, T(1), index_t{0},
                                                static_cast<const nn::detail::grad_ready_hook*>(nullptr),
                                                plan_.whole(args)...);
    }
    plan_.split(n);
    const bool mean = nn::detail::reduction_of(loss) == nn::reduction::mean;
    decltype(auto) part_loss = nn::detail::part_loss(loss, scored_mean);
    const bool accumulating = group_[0].gradients() == nn::grad_state::local;
    for (int i = 0; i < group_.size(); ++i) {  // no replica undoes an earlier step
      detail::trainer_access::forget_step(group_[i]);
    }
    // One replica per rank: each bucket's all-reduce starts as soon as backward has finished it.
    const bool overlap = overlapped() && !local_only;
    auto& parts = plan_.scatter(args...);
    auto backward = [&](int i) {
      auto& r = group_[i];
      const index_t c = plan_.count(i);
      const dist::detail::context_scope context("gradients", step_number);
      if (c > 0) {
        const T scale = at.scale<T>(mean, c);
        losses_[static_cast<std::size_t>(i)] =
            static_cast<double>(scale) * detail::on_shard(i, plan_.begin(i), plan_.begin(i) + c, args..., [&] {
              return std::apply(
                  [&](const auto&... part) {
                    return detail::trainer_access::step_grads(r, part_loss, local_only, scale,
                                                              global_offset_ + plan_.begin(i),
                                                              overlap ? reducer_.hook() : nullptr, part...);
                  },
                  parts[static_cast<std::size_t>(i)]);
            });
      } else {  // no samples here: contribute nothing, but take part in every collective
        // The buffer sync writes this replica's buffers too: a step that fails puts them back.
        detail::trainer_access::arm_undo(r);
        losses_[static_cast<std::size_t>(i)] = 0;
        if (!accumulating) {
          tensor<T>(detail::trainer_access::flat_grads(r)).fill(T(0));
        }
        detail::replica_access::set_gradients(r, local_only ? nn::grad_state::local : nn::grad_state::complete);
        if (overlap) {
          reducer_.start_all();  // nothing computed here: every bucket is final (zero) at once
        }
      }
      if (overlap) {
        reducer_.finish();
      }
    };
    const detail::scattered_parts_scope<decltype(parts)> let_go{parts};
    try {
      run_replicas(backward, {.gradients = !local_only && !overlap,
                              .buffers = group_[0].training(),
                              .others_wait = overlap || group_.world_size() > 1,
                              .step = step_number});
    } catch (...) {
      undo_step();
      throw;
    }
    restore_steps(step_number);  // a replica without samples counts the step too (dropout's streams)
    double total = 0;
    for (double l : losses_) {
      total += l;
    }
    // Across ranks the global loss is every rank's share of it, summed.
    const dist::detail::context_scope context("loss", step_number);
    return group_.world_size() > 1 ? batch_.sum(*group_.world(), total) : total;
  }

  /// Sets the global batch size and this rank's first sample in it: the local batch in one process,
  /// every rank's count gathered across processes.
  void global_batch(index_t n, index_t scored, dist::detail::step_mode mode) {
    global_n_ = n;
    global_scored_ = scored;
    global_offset_ = 0;
    if (group_.world_size() > 1) {
      batch_.exchange(*group_.world(), n, scored, mode);
      global_n_ = batch_.total();
      global_scored_ = batch_.scored();
      global_offset_ = batch_.offset();
    }
  }

  /// Whether gradients travel while backward runs: one replica per rank of several.
  bool overlapped() const noexcept { return group_.world_size() > 1 && group_.size() == 1; }

  /// Replica i's buffers synchronised, weighted by its share of the (global) batch.
  void sync_buffers(int i) {
    const index_t total = group_.world_size() > 1 ? global_n_ : plan_.total();
    if (total == 0) {  // no replica of any rank saw a sample: every buffer is as it was
      return;
    }
    const double w = static_cast<double>(plan_.count(i)) / static_cast<double>(total);
    buffers_[static_cast<std::size_t>(i)].sync(group_.comm(i), w);
  }

  /// Runs f(); after a failure no replica's gradients count.
  template <class F>
  void guarded(F&& f) {
    try {
      f();
    } catch (...) {
      reducer_.reset();
      set_gradients(nn::grad_state::none);
      throw;
    }
  }
  /// Runs job(i) on every replica at once (jobs with collectives inside, unless `collectives` is
  /// false: then a failing replica aborts no communicator).
  template <class Job>
  void run(Job& job, bool collectives = true) {
    guarded([&] { group_.run(job, collectives); });
  }

  /// What the replicas exchange after their own work.
  struct exchange {
    bool gradients = false;  ///< summed over the replicas
    bool buffers = false;    ///< synchronised by their policies
    /// Other replicas or ranks wait for this work: in its own collectives (gradients sent while
    /// backward runs) or in the step's after it (the loss summed across ranks).
    bool others_wait = false;
    std::uint64_t step = 0;  ///< for error messages
  };
  /// Runs work(i) for every replica, then the exchange `x`. Host workers of one process run each
  /// replica's work as a task any free worker (or the caller) may take, then sum and synchronise
  /// over each other's memory directly: a worker the OS has not scheduled delays no rendezvous.
  /// Other replicas (GPUs, ranks) meet in their collectives.
  template <class Work>
  void run_replicas(Work& work, exchange x) {
    if (group_.host_only()) {
      guarded([&] {
        group_.each(work, group_.size());
        if (x.gradients) {
          sum_host_gradients();
        }
      });
      if (x.buffers && plan_.total() > 0) {
        for (int i = 0; i < group_.size(); ++i) {
          weights_[static_cast<std::size_t>(i)] =
              static_cast<double>(plan_.count(i)) / static_cast<double>(plan_.total());
        }
        dist::detail::replica_buffers::sync_replicas(buffers_, weights_);
      }
      return;
    }
    auto job = [&](int i) {
      work(i);
      if (x.gradients) {
        const dist::detail::context_scope context("gradients", x.step);
        reducer_.reduce(group_.comm(i), detail::trainer_access::flat_grads(group_[i]));
      }
      if (x.buffers) {
        const dist::detail::context_scope context("buffers", x.step);
        sync_buffers(i);
      }
    };
    // An evaluation forward meets no other replica: its failure must not abort the communicators
    // (across ranks that ended the job; a NCCL communicator is not usable again).
    run(job, x.gradients || x.buffers || x.others_wait);
  }

  /// The host replicas' gradients summed in replica order (as the local all-reduce sums), in
  /// slices of at least `grain` elements that free workers take. Sliced even for a small model: a
  /// replica's update then reads the slices its own thread wrote from its own cache (the digits
  /// job's default run: 0.137 s with one slice, 0.124 s with five).
  void sum_host_gradients() {
    const index_t total = detail::trainer_access::flat_grads(group_[0]).numel();
    constexpr index_t grain = 4096;
    const int n = group_.size();
    const int slices = static_cast<int>(std::min<index_t>(group_.max_tasks(), (total + grain - 1) / grain));
    auto slice = [&](int k) {
      dist::detail::combine_into_all([&](int r) { return detail::trainer_access::flat_grads(group_[r]).data(); }, n,
                                     total * k / slices, total * (k + 1) / slices, dist::reduce_op::sum);
    };
    group_.each(slice, slices);
  }

  /// Every rank must hold the same model (names, element types, shapes); then rank 0's parameters,
  /// buffers and module settings become everyone's. A difference is the same error on every rank, naming it.
  static void check_chunk(index_t chunk) {
    DP_CHECK(chunk >= 1, value_error, "dp: parallel: parallel_options::chunk must be positive, got ", chunk);
  }
  /// Every rank holds the same model and options (each rank's refusal of its own options comes after).
  void check_world() {
    const dist::detail::context_scope context("model check at construction", 0);
    dist::detail::require_same_text(
        *group_.world(), dist::detail::model_signature<Model, T>(model(), layout(), replica_count()),
        "the ranks hold different models", "every rank must build the same model (the same code and sizes)");
    // Options that shape the collectives (bucket layout, the deterministic tree) or the step's
    // outcome: ranks that differ would meet mismatched collectives, or train apart.
    std::string options =
        dp::detail::concat("bucket_bytes ", opts_.bucket_bytes, "\nfirst_bucket_bytes ", opts_.first_bucket_bytes,
                           "\ndeterministic ", opts_.deterministic ? "true" : "false", "\n");
    // The chunk shapes the deterministic mode's tree; elsewhere only a refused one differs.
    options += opts_.deterministic ? dp::detail::concat("chunk ", opts_.chunk, "\n")
                                   : dp::detail::concat("chunk positive ", opts_.chunk >= 1 ? "true" : "false", "\n");
    options += dp::detail::concat("allow_non_finite_loss ", opts_.allow_non_finite_loss ? "true" : "false", "\n");
    const dist::detail::context_scope options_check("parallel_options check at construction", 0);
    try {
      dist::detail::require_same_text(*group_.world(), options, "the ranks were given different parallel_options",
                                      "every rank must pass the same options");
    } catch (const value_error&) {
      check_chunk(opts_.chunk);  // the rank whose own option is refused says why; the others name the difference
      throw;
    }
  }
  /// Replica 0 of rank 0's parameters and buffers become every replica's.
  void broadcast_model(const char* what, std::uint64_t step) {
    auto job = [&](int i) {
      const dist::detail::context_scope broadcast(what, step);
      tensor<T> params = detail::trainer_access::flat_params(group_[i]);
      group_.comm(i).broadcast(params, 0);
      buffers_[static_cast<std::size_t>(i)].broadcast(group_.comm(i), 0);
    };
    run(job);
  }

  /// How many ranks say they failed (`failed` is this rank's say), summed across the ranks.
  std::int64_t failures(const char* what, bool failed) {
    const dist::detail::context_scope context(what, steps());
    tensor<std::int64_t> count = full<std::int64_t>({1}, failed ? 1 : 0);
    group_.world()->all_reduce(count, dist::reduce_op::sum);
    return count.item();
  }
  /// io::load's and load_checkpoint's agreement before their first write (replica_access). With a
  /// `file` fingerprint (a checkpoint's CRCs) the ranks must also have read the same file: ranks that
  /// read different ones would each write their own optimizer state, which nothing compares later.
  void agree_before_update(const char* what, bool failed, std::optional<std::uint64_t> file) {
    if (group_.world_size() > 1) {
      const std::int64_t n = failures(what, failed);
      DP_CHECK(failed || n == 0, runtime_error, "dp: parallel: ", what, " failed on ", n,
               " other rank(s) (their error says why); no rank loaded anything: the model and optimizer are as "
               "they were on every rank");
      if (file) {  // no rank failed: every one reached here with its fingerprint
        const dist::detail::context_scope context(what, steps());
        // The halves and their negations under max: every rank learns the largest and the smallest.
        const auto hi = static_cast<std::int64_t>(*file >> 32), lo = static_cast<std::int64_t>(*file & 0xffffffffu);
        tensor<std::int64_t> range = from_vector<std::int64_t>({hi, -hi, lo, -lo});
        group_.world()->all_reduce(range, dist::reduce_op::max);
        const std::vector<std::int64_t> r = range.to_vector();
        DP_CHECK(r[0] == -r[1] && r[2] == -r[3], runtime_error, "dp: parallel: ", what,
                 ": the ranks read different files (their CRC-32s differ; a stale copy on one node?); no rank "
                 "loaded anything: the model and optimizer are as they were on every rank; give every rank the "
                 "same file");
      }
    }
  }

  /// An optimizer's options, where it is made (replica_access): ranks that train with different ones
  /// (another lr read from a rank's own config) would update their replicas differently, with no error.
  void agree_options(const char* optimizer, const std::string& options) {
    if (group_.world_size() > 1) {
      const dist::detail::context_scope context(optimizer, steps());
      const std::string what = dp::detail::concat("the ranks' ", optimizer, " options differ");
      dist::detail::require_same_text(*group_.world(), options, what.c_str(),
                                      "make every rank's optimizer with the same options, or their replicas "
                                      "would drift apart");
    }
  }

  /// Compares every tensor of the model with rank 0's, bit for bit; where a rank differs, every rank
  /// takes rank 0's model and settings and throws, naming the first tensor that differed.
  void require_rank_0s_values(const char* what) {
    const dist::detail::context_scope context(what, steps());
    std::string first;  // the first tensor this rank holds differently
    nn::for_each_tensor(group_[0].model(), [&](const std::string& name, const auto& member) {
      using V = typename std::remove_cvref_t<decltype(member)>::value_type;
      // On the host: the world communicator is MPI's, whatever device the replicas are on.
      const std::vector<V> mine = member.value().to_vector();
      tensor<V> rank0 = from_vector(mine);
      group_.world()->broadcast(rank0, 0);
      const std::vector<V> theirs = rank0.to_vector();
      if (first.empty() && !mine.empty() && std::memcmp(mine.data(), theirs.data(), mine.size() * sizeof(V)) != 0) {
        first = name;
      }
    });
    tensor<std::int64_t> differing = full<std::int64_t>({1}, first.empty() ? 0 : 1);
    group_.world()->all_reduce(differing, dist::reduce_op::sum);
    if (differing.item() == 0) {
      return;
    }
    broadcast_model(what, steps());
    share_settings(what, steps());
    throw runtime_error(dp::detail::concat(
        "dp: parallel: the ranks loaded different values (", differing.item(), " rank(s) differ from rank 0",
        first.empty() ? std::string() : ", this one in '" + first + "'",
        "): each rank read its own file and the files differ (a stale copy on one node?); every rank now holds rank "
        "0's model: load again, the same file on every rank"));
  }

  /// Replica 0 of rank 0's module settings (dropout's p and seed, ...) become every replica's: the
  /// masks and statistics of a step then do not depend on the rank that computes them.
  void share_settings(const char* what, std::uint64_t step) {
    std::vector<std::int64_t> words = detail::trainer_access::settings(group_[0]);
    if (words.empty()) {  // the same on every rank: the count follows from the model's type
      return;
    }
    if (group_.world_size() > 1) {
      const dist::detail::context_scope context(what, step);
      tensor<std::int64_t> t = from_vector(words);
      group_.world()->broadcast(t, 0);
      words = t.to_vector();
    }
    for (int i = 0; i < group_.size(); ++i) {
      detail::trainer_access::adopt_settings(group_[i], words);
    }
  }

  parallel_options opts_;
  dist::detail::replica_group<Model> group_;
  detail::scatter_plan plan_;
  dist::detail::gradient_reducer<T> reducer_;
  std::vector<dist::detail::replica_buffers> buffers_;
  std::vector<double> losses_;
  std::vector<double> weights_ = std::vector<double>(static_cast<std::size_t>(group_.size()));  // buffer sync's
  dist::detail::global_batch batch_;
  std::optional<dist::detail::deterministic_step<Model>> deterministic_;  // the deterministic mode's step
  // The global batch, its rows the loss scores, and this rank's first sample in it.
  index_t global_n_ = 0, global_scored_ = 0, global_offset_ = 0;
  bool non_finite_step_ = false;  // backward returned this step's loss as NaN or infinite
};

}  // namespace dp::inline DP_ABI
