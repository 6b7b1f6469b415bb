// dp::dist::session: the processes of one training job.
//
//   int main(int argc, char** argv) {
//     dp::dist::session world{argc, argv};                  // MPI_Init_thread ... MPI_Finalize
//     dp::parallel<model> par{model{}, world};              // one replica per rank
//     dp::data::loader loader{data, {.batch = 64}, world};  // this rank's share of each batch
//
// Under `mpirun -np N` it is rank world.rank() of N; run alone, it is a session of one, with or
// without MPI compiled in. A program started by mpirun but compiled without MPI would silently train
// N independent copies, so that is an error that says how to fix it.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <dp/config.hpp>
#include <dp/core/device.hpp>
#include <dp/core/error.hpp>
#include <dp/data/loader.hpp>
#include <dp/dist/communicator.hpp>
#include <dp/dist/mpi.hpp>
#include <dp/dist/nccl.hpp>

namespace dp::inline DP_ABI::dist {

namespace detail {
/// The number of processes a launcher says it started: Open MPI's mpirun, MPICH's and Intel MPI's
/// (PMI, Hydra), or Slurm's srun when it started several (SLURM_STEP_NUM_TASKS is a step's;
/// SLURM_NTASKS is not read, as a batch script, one process, has it too). -1: a PMIx launcher
/// (srun --mpi=pmix, prterun) named this process's rank but not the size, which MPI then gives.
/// 0: no launcher, or DP_RUN_ALONE=1 (independent runs started together: `srun -n 8 ./train
/// --seed=$SLURM_PROCID`).
inline int launcher_size() {
  const auto set = [](const char* var) -> const char* {
    const char* v = std::getenv(var);
    return v && *v ? v : nullptr;
  };
  if (const char* alone = set("DP_RUN_ALONE"); alone && std::string_view(alone) != "0") {
    return 0;
  }
  for (const char* var : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "MPI_LOCALNRANKS"}) {
    if (const char* v = set(var)) {
      return std::atoi(v);
    }
  }
  if (const char* v = set("SLURM_STEP_NUM_TASKS"); v && std::atoi(v) > 1) {
    return std::atoi(v);
  }
  return set("PMIX_RANK") ? -1 : 0;
}
}  // namespace detail

class session {
 public:
  /// A session of one process (no MPI).
  session() { check_not_launched(); }

  /// Joins the job: when a launcher started this process (or the application initialised MPI),
  /// initialises MPI (MPI_THREAD_MULTIPLE asked, MPI_THREAD_SERIALIZED at least) unless the
  /// application already did, and finalises it at destruction. Run alone it is a session of one
  /// that never touches MPI.
  session(int& argc, char**& argv, communicator_options o = {}) : opts_(o) {
    detail::check_timeout(o, "session");
#if DP_HAS_MPI
    int initialized = 0;
    MPI_Initialized(&initialized);
    if (!initialized && detail::launcher_size() == 0) {
      return;
    }
    if (!initialized) {
      // Open MPI's non-blocking all-reduce (libnbc, which carries dp's gradient buckets) picks by
      // default an algorithm that took 0.8 ms for 2.7 MB between 2 ranks where its blocking one
      // takes 0.36 ms; Rabenseifner's (reduce-scatter, then all-gather) takes 0.37 ms
      // (benchmarks/RESULTS.md). The launcher's or user's own setting wins (no overwrite).
      ::setenv("OMPI_MCA_coll_libnbc_iallreduce_algorithm", "3", 0);
      int provided = 0;
      const int rc = MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
      DP_CHECK(rc == MPI_SUCCESS, runtime_error, "dp: session: MPI_Init_thread failed: ", detail::mpi_error_text(rc));
      if (provided < MPI_THREAD_SERIALIZED) {
        MPI_Finalize();  // made here, so ended here: the constructor throws and no destructor runs
        refuse_thread_level(provided);
      }
      owns_mpi_ = true;
      // Open MPI reports an error of a non-blocking collective (the MPI_ERR_TRUNCATE of ranks that
      // passed different counts) on MPI_COMM_WORLD, whatever the collective's communicator says:
      // its default fatal handler ended the job before dp could name the collective.
      MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    } else {
      int provided = 0;  // the application's MPI_Init may have asked for less than dp needs
      MPI_Query_thread(&provided);
      DP_CHECK(provided >= MPI_THREAD_SERIALIZED, runtime_error,
               "dp: session: the application initialised MPI at thread level ", provided,
               " (MPI_Init gives MPI_THREAD_SINGLE), but dp calls MPI from its worker threads; initialise it with "
               "MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided), or let the session do it");
    }
    state_ = std::make_shared<detail::mpi_world_state>();
    // With a deadline: a rank that failed before making its session leaves the others an error.
    // At least a minute, whatever the collectives' timeout: processes reach this point at different
    // moments (MPI's start-up on loaded or distant nodes). The request left behind can never
    // complete, so the job ends here as after any failed collective (no destructor runs for a
    // constructor that throws).
    try {
      world_ = detail::dup_comm(MPI_COMM_WORLD,
                                std::max<std::chrono::milliseconds>(opts_.timeout, std::chrono::minutes(1)), *state_);
    } catch (const runtime_error&) {
      if (!state_->failed) {
        if (owns_mpi_) {
          MPI_Finalize();  // MPI refused the duplicate: nothing is in flight, and no destructor runs
        }
        throw;
      }
      end_failed_job(false);
    }
    // An application's MPI_COMM_WORLD may keep MPI's fatal handler, which the duplicate inherits.
    MPI_Comm_set_errhandler(world_, MPI_ERRORS_RETURN);
    MPI_Comm_rank(world_, &rank_);
    MPI_Comm_size(world_, &size_);
    if (const int launched = detail::launcher_size(); owns_mpi_ && size_ == 1 && launched > 1) {
      // MPI_Init found no process manager (srun without its MPI plugin): each copy is a world of one.
      MPI_Comm_free(&world_);
      MPI_Finalize();
      throw runtime_error(dp::detail::concat(
          "dp: session: the launcher started ", launched,
          " processes but MPI sees this one alone, so each would train alone: MPI did not reach the launcher's process "
          "manager (under Slurm run srun --mpi=pmix or --mpi=pmi2, as the cluster's MPI needs, or mpirun); for "
          "independent runs started together set DP_RUN_ALONE=1"));
    }
    MPI_Comm local = MPI_COMM_NULL;
    const int split = MPI_Comm_split_type(world_, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &local);
    if (split != MPI_SUCCESS) {  // every rank had just joined the duplicate: one died since
      state_->failed = true;
      state_->why =
          dp::detail::concat("dp: session: finding the ranks on this machine (MPI_Comm_split_type) failed on rank ",
                             rank_, ": ", detail::mpi_error_text(split));
      end_failed_job(false);
    }
    MPI_Comm_rank(local, &local_rank_);
    MPI_Comm_size(local, &local_size_);
    MPI_Comm_free(&local);
#else
    (void)argc;
    (void)argv;
    check_not_launched();
#endif
  }
  session(const session&) = delete;
  session& operator=(const session&) = delete;

  ~session() {
#if DP_HAS_MPI
    int finalized = 0;
    MPI_Finalized(&finalized);  // an application that initialised MPI may also have finalised it
    if (state_ && state_->failed) {
      end_failed_job(finalized != 0);
    }
    if (world_ != MPI_COMM_NULL && !finalized) {
      MPI_Comm_free(&world_);
    }
    if (owns_mpi_ && !finalized) {
      MPI_Finalize();
    }
#endif
  }

  int rank() const noexcept { return rank_; }
  int size() const noexcept { return size_; }
  /// This process's rank among the processes of its machine (one GPU each), and their number.
  int local_rank() const noexcept { return local_rank_; }
  int local_size() const noexcept { return local_size_; }
  const communicator_options& options() const noexcept { return opts_; }

  /// This process's devices. Alone: dp::devices() (every GPU, else a host worker per core, or
  /// DP_DEVICES). One of several processes on a machine: its GPU (one per local rank), else its
  /// share of the cores as host workers (cores / local_size(), at least one).
  std::vector<device> local_devices() const {
    if (local_size_ == 1) {
      return devices();
    }
    const int gpus = cuda_device_count();
    if (gpus > 0) {
      return {cuda(local_rank_ % gpus)};
    }
    const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    std::vector<device> out;
    for (int i = 0; i < std::max(1, cores / local_size_); ++i) {
      out.push_back(cpu(i));
    }
    return out;
  }

  /// This rank's share of every global batch (`dp::data::loader{data, options, world}`); the
  /// loader checks with the other ranks that they load the same number of samples the same way.
  operator data::rank_share() const {  // NOLINT(google-explicit-constructor)
    data::rank_share s{rank_, size_, nullptr};
#if DP_HAS_MPI
    if (size_ > 1) {
      s.agree = [this](std::span<const std::int64_t> values, std::span<const char* const> names) {
        agree(values, names, "loader");
      };
    }
#endif
    return s;
  }

#if DP_HAS_MPI
  /// Throws the same error on every rank unless every rank passes the same `values` (a collective).
  void agree(std::span<const std::int64_t> values, std::span<const char* const> names, const char* who) const {
    mpi_communicator c = make_communicator(opts_);
    const auto n = static_cast<index_t>(values.size());
    tensor<std::int64_t> mine = empty<std::int64_t>({n}), all = empty<std::int64_t>({n * size_});
    std::copy(values.begin(), values.end(), mine.data());
    c.all_gather(mine, all);
    const std::int64_t* v = all.data();
    for (int r = 1; r < size_; ++r) {
      for (index_t k = 0; k < n; ++k) {
        DP_CHECK(v[r * n + k] == v[k], value_error, "dp: ", who, ": the ranks disagree: rank 0 has ",
                 names[static_cast<std::size_t>(k)], " ", v[k], " where rank ", r, " has ", v[r * n + k],
                 "; every rank must load the same data with the same options: each takes its share of every "
                 "global batch, and shares of different batches would train on other data than one process "
                 "would, or hang the job where their counts differ");
      }
    }
  }
#endif

#if DP_HAS_MPI
  /// How many ranks pass `failed` (a collective, over the session's options): a refusal one rank
  /// alone makes reaches the others at once, where they would wait in the next collective for
  /// the timeout.
  std::int64_t count_failures(bool failed) const {
    mpi_communicator c = make_communicator(opts_);
    tensor<std::int64_t> count = full<std::int64_t>({1}, failed ? 1 : 0);
    c.all_reduce(count, reduce_op::sum);
    return count.item();
  }
#endif

#if DP_HAS_MPI
  /// A new communicator over every rank (a duplicate: its traffic never meets another's).
  mpi_communicator make_communicator(communicator_options o) const {
    detail::check_timeout(o, "MPI communicator");
    return mpi_communicator(detail::dup_comm(world_, o.timeout, *state_), o, state_);
  }
#endif

#if DP_HAS_CUDA && DP_HAS_NCCL
  /// An NCCL communicator over every rank, this rank on CUDA device `device` (one GPU per rank):
  /// rank 0 makes NCCL's unique id and broadcasts it over MPI. Collective: every rank calls it.
  nccl_communicator make_nccl_communicator(int device, communicator_options o) const {
    ncclUniqueId id{};
    if (rank_ == 0) {
      DP_NCCL_CHECK(ncclGetUniqueId(&id));
    }
#if DP_HAS_MPI
    if (size_ > 1) {
      mpi_communicator c = make_communicator(o);
      tensor<std::int64_t> bytes = zeros<std::int64_t>({(static_cast<index_t>(sizeof(id)) + 7) / 8});
      std::memcpy(bytes.data(), &id, sizeof(id));
      c.broadcast(bytes, 0);
      std::memcpy(&id, bytes.data(), sizeof(id));
    }
#endif
    return dist::make_nccl_communicator(id, rank_, size_, device, o);
  }
#endif

 private:
#if DP_HAS_MPI
  /// A collective failed: its request can never complete, so MPI_Finalize could wait forever. Ends
  /// the whole job instead: mpirun then stops every rank (none is left hanging). Said first: an
  /// application that catches dp's error outside the session's scope never sees it.
  [[noreturn]] void end_failed_job(bool finalized) const {
    std::fprintf(stderr, "dp: session: ending the job (MPI_Abort) after a failed collective: %s\n",
                 state_->why.c_str());
    std::fflush(stderr);
    if (!finalized) {
      MPI_Abort(MPI_COMM_WORLD, 3);
    }
    std::_Exit(3);  // MPI_Abort may return
  }
  [[noreturn]] static void refuse_thread_level(int provided) {
    throw runtime_error(dp::detail::concat("dp: session: this MPI grants thread level ", provided,
                                           " but dp calls MPI from its worker threads and needs "
                                           "MPI_THREAD_SERIALIZED or more"));
  }
#endif
  static void check_not_launched() {
    const int n = detail::launcher_size();
    DP_CHECK(n <= 1, runtime_error, "dp: session: this process was started as one of ", n,
             " (by mpirun or a launcher) but the program was built without MPI, so each would train alone; link "
             "dp::mpi (find_package(dp COMPONENTS mpi), target_link_libraries(app PRIVATE dp::mpi)), or set "
             "DP_RUN_ALONE=1 for independent runs started together");
  }

  communicator_options opts_{};
  int rank_ = 0, size_ = 1, local_rank_ = 0, local_size_ = 1;
#if DP_HAS_MPI
  bool owns_mpi_ = false;
  MPI_Comm world_ = MPI_COMM_NULL;
  std::shared_ptr<detail::mpi_world_state> state_;
#endif
};

}  // namespace dp::inline DP_ABI::dist
