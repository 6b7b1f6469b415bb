// The replicas of dp::parallel: one nn::trainer per device, their threads and their communicators.
// Replica 0 holds the canonical model; the others start as copies of it. run(job) calls job(i) on
// every replica at once; a replica that fails aborts the collectives the others wait in, so they
// stop with an error instead of hanging, and the first failure is rethrown as it was.
#pragma once

#include <algorithm>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <dp/core/device.hpp>
#include <dp/core/error.hpp>
#include <dp/dist/any_communicator.hpp>
#include <dp/dist/hierarchical.hpp>
#include <dp/dist/local.hpp>
#include <dp/dist/mpi.hpp>
#include <dp/dist/nccl.hpp>
#include <dp/dist/session.hpp>
#include <dp/dist/workers.hpp>
#include <dp/exec/thread_pool.hpp>
#include <dp/nn/trainer.hpp>

namespace dp::inline DP_ABI::dist::detail {

/// Rejects an empty device list, mixed kinds, unusable and repeated devices.
inline void validate_devices(const std::vector<device>& devices) {
  DP_CHECK(!devices.empty(), value_error, "dp: parallel needs at least one device");
  auto list = [&] {
    std::string s = "{";
    for (std::size_t i = 0; i < devices.size(); ++i) {
      s += (i ? ", " : "") + devices[i].str();
    }
    return s + "}";
  };
  for (std::size_t i = 0; i < devices.size(); ++i) {
    require_usable(devices[i]);
    DP_CHECK(devices[i].kind == devices[0].kind, device_error, "dp: parallel: the device list ", list(),
             " mixes host workers and GPUs; use one kind");
    for (std::size_t j = 0; j < i; ++j) {
      DP_CHECK(devices[i] != devices[j], value_error, "dp: parallel: device ", devices[i],
               " appears twice in the device list ", list(),
               "; each replica needs its own device (two models on one device are two parallel objects)");
    }
  }
}

template <class Model>
class replica_group {
 public:
  /// `one_thread`: every replica runs its host loops on one thread (so that their results cannot
  /// depend on how many replicas share the cores).
  replica_group(Model model, std::vector<device> devices, const communicator_options& o, session* world,
                bool one_thread = false)
      : devices_(std::move(devices)) {
    // This rank's own refusals come before its first collective (making the communicators), and
    // across ranks every rank hears of them there: the others waited in that collective until the
    // timeout (5 minutes by default) and then blamed a missing rank.
    std::exception_ptr refused;
    try {
      validate_devices(devices_);
      detail::check_timeout(o, "parallel_options::comm");
      const int n = static_cast<int>(devices_.size());
      replicas_.push_back(std::make_unique<nn::trainer<Model>>(std::move(model), devices_[0]));
      for (int i = 1; i < n; ++i) {
        replicas_.push_back(std::make_unique<nn::trainer<Model>>(Model(replicas_[0]->model()), devices_[i]));
      }
      for (auto& r : replicas_) {
        dp::detail::trainer_access::make_replica(*r);
      }
    } catch (...) {
      refused = std::current_exception();
    }
    agree_to_start(world, refused != nullptr);
    if (refused) {
      std::rethrow_exception(refused);
    }
    const int n = size();
    make_communicators(o, world);
    const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    // Host workers share the cores of their machine with the other ranks on it.
    const int processes_here = world != nullptr ? world->local_size() : 1;
    const int budget =
        on_host() && !one_thread ? std::max(1, std::min(num_threads(), cores) / (n * processes_here)) : 1;
    threads_ = std::make_unique<replica_threads>(n, budget);
  }

  int size() const noexcept { return static_cast<int>(replicas_.size()); }
  const std::vector<device>& devices() const noexcept { return devices_; }
  nn::trainer<Model>& operator[](int i) noexcept { return *replicas_[static_cast<std::size_t>(i)]; }
  const nn::trainer<Model>& operator[](int i) const noexcept { return *replicas_[static_cast<std::size_t>(i)]; }
  /// Replica i's communicator (over every replica of every rank).
  any_communicator& comm(int i) noexcept { return comms_[static_cast<std::size_t>(i)]; }
  const any_communicator& comm(int i) const noexcept { return comms_[static_cast<std::size_t>(i)]; }
  /// The communicator over the ranks of the session (host tensors), or null in one process.
  any_communicator* world() noexcept { return world_ ? &*world_ : nullptr; }
  int world_rank() const noexcept { return world_ ? world_->rank() : 0; }
  int world_size() const noexcept { return world_ ? world_->size() : 1; }

  /// Whether the replicas are host workers (validate_devices: every device is of one kind).
  bool on_host() const noexcept { return devices_[0].is_cpu(); }
  /// Whether the replicas are host workers of one process (their collectives are plain loops over
  /// each other's memory, which dp::parallel runs as tasks instead of rendezvous).
  bool host_only() const noexcept { return on_host() && !world_; }

  /// Runs task(k) for k in [0, tasks) on whichever replica threads are free (tasks that never wait
  /// for each other: no collectives inside); rethrows the lowest failing task's exception.
  template <class Task>
  void each(Task& task, int tasks) {
    threads_->each(task, tasks);
  }
  /// The most tasks one each() call takes.
  int max_tasks() const noexcept { return threads_->max_tasks(); }

  /// Runs job(i) on every replica at once; a failing replica aborts the collectives the others wait
  /// in (`collectives`: the job has some; without, nothing waits for it and nothing is aborted).
  template <class Job>
  void run(Job& job, bool collectives = true) {
    std::exception_ptr first;
    std::mutex m;
    auto guarded = [&](int i) {
      try {
        job(i);
      } catch (...) {
        {
          std::lock_guard lock(m);
          if (!first) {
            first = std::current_exception();
          }
        }
        if (collectives) {
          comms_[static_cast<std::size_t>(i)].abort(
              dp::detail::concat("replica ", i, " (", devices_[static_cast<std::size_t>(i)], ") failed: ", what()));
        }
        throw;
      }
    };
    try {
      threads_->run(guarded);
    } catch (...) {
      comms_[0].recover();
      if (first) {
        std::rethrow_exception(first);
      }
      throw;
    }
  }

 private:
  /// The message of the exception being handled (also for one not derived from std::exception).
  static std::string what() {
    try {
      throw;
    } catch (const std::exception& e) {
      return e.what();
    } catch (...) {
      return "an exception not derived from std::exception";
    }
  }

  /// Across ranks: every rank says whether it refused its own arguments, and one that did not
  /// fails at once, with a runtime_error, where another did (that one throws its own error).
  static void agree_to_start([[maybe_unused]] session* world, [[maybe_unused]] bool refused) {
#if DP_HAS_MPI
    if (world != nullptr && world->size() > 1) {
      const std::int64_t n = world->count_failures(refused);
      DP_CHECK(refused || n == 0, runtime_error, "dp: parallel: ", n,
               " other rank(s) refused their arguments at construction (their error says why); every rank stops");
    }
#endif
  }
  void make_communicators(const communicator_options& o, [[maybe_unused]] session* world) {
    const int n = size();
#if DP_HAS_MPI
    if (world != nullptr && world->size() > 1) {
      world_.emplace(world->make_communicator(o));
      if (!on_host()) {
#if DP_HAS_CUDA && DP_HAS_NCCL
        DP_CHECK(n == 1, device_error, "dp: parallel across processes drives one GPU per rank, got ", n,
                 " devices; start one process per GPU (mpirun -np <GPUs per machine x machines>) and pass "
                 "world.local_devices()");
        comms_.emplace_back(world->make_nccl_communicator(devices_[0].index, o));
        return;
#else
        throw device_error(
            "dp: parallel across processes on GPUs needs NCCL: compile with nvcc and link dp::nccl and dp::mpi");
#endif
      }
      using hier = hierarchical_communicator<mpi_communicator>;
      // The local replicas wait for their leader while it waits for the other ranks: they wait
      // longer, so that the leader's error, which names the missing rank, comes first.
      communicator_options local = o;
      local.timeout = o.timeout <= (max_timeout - std::chrono::seconds(1)) / 2 ? 2 * o.timeout + std::chrono::seconds(1)
                                                                               : max_timeout;
      auto locals = make_local_communicators(n, local);
      for (int i = 0; i < n; ++i) {
        std::optional<mpi_communicator> global;
        if (i == 0) {
          global.emplace(world->make_communicator(o));
        }
        comms_.emplace_back(
            hier(std::move(locals[static_cast<std::size_t>(i)]), std::move(global), world->rank(), world->size()));
      }
      return;
    }
#endif
    if (on_host()) {
      for (auto& c : make_local_communicators(n, o)) {
        comms_.emplace_back(std::move(c));
      }
      return;
    }
#if DP_HAS_CUDA && DP_HAS_NCCL
    std::vector<int> ids;
    for (auto d : devices_) {
      ids.push_back(d.index);
    }
    for (auto& c : make_nccl_communicators(ids, o)) {
      comms_.emplace_back(std::move(c));
    }
#else
    DP_CHECK(n == 1, device_error, "dp: parallel over several GPUs needs NCCL: compile with nvcc and link dp::nccl");
    for (auto& c : make_local_communicators(1, o)) {
      comms_.emplace_back(std::move(c));
    }
#endif
  }

  std::vector<device> devices_;
  std::vector<std::unique_ptr<nn::trainer<Model>>> replicas_;
  std::vector<any_communicator> comms_;
  std::optional<any_communicator> world_;
  std::unique_ptr<replica_threads> threads_;
};

}  // namespace dp::inline DP_ABI::dist::detail
