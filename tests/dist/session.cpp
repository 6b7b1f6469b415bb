// dp::dist::session in a program built without MPI: a session of one, which refuses to start when a
// launcher started several copies of it (each would train alone, on all the data).
#include <cstdlib>
#include <optional>
#include <string>

#include <doctest/doctest.h>

#include <dp/dp.hpp>

namespace {
/// Sets an environment variable for one scope, then puts back what was there.
class scoped_env {
 public:
  scoped_env(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) {
      old_ = old;
    }
    ::setenv(name, value, 1);
  }
  scoped_env(const scoped_env&) = delete;
  scoped_env& operator=(const scoped_env&) = delete;
  ~scoped_env() {
    if (old_) {
      ::setenv(name_, old_->c_str(), 1);
    } else {
      ::unsetenv(name_);
    }
  }

 private:
  const char* name_;
  std::optional<std::string> old_;
};
}  // namespace

TEST_CASE("a program built without MPI refuses to run as one of several processes, whichever launcher started it") {
  // mpirun (Open MPI), Hydra (MPICH, Intel MPI) and srun: Slurm's srun --mpi=pmix sets no size of
  // PMIx's, and its copies each trained alone.
  for (const char* var : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "SLURM_STEP_NUM_TASKS"}) {
    CAPTURE(var);
    const scoped_env launched(var, "4");
    CHECK_THROWS_WITH_AS(dp::dist::session{}, doctest::Contains("was started as one of 4"), dp::runtime_error);
  }
  // One process: a batch script holds its allocation's SLURM_NTASKS, and `srun -n 1` a step of one.
  const scoped_env allocation("SLURM_NTASKS", "4");
  const scoped_env step("SLURM_STEP_NUM_TASKS", "1");
  CHECK(dp::dist::detail::launcher_size() == 0);
  CHECK(dp::dist::session{}.size() == 1);
  // A PMIx launcher names the rank alone: a build with MPI asks MPI for the size; without it there
  // is no size to refuse.
  const scoped_env rank("PMIX_RANK", "0");
  CHECK(dp::dist::detail::launcher_size() == -1);
  CHECK(dp::dist::session{}.size() == 1);
}

TEST_CASE("DP_RUN_ALONE=1 lets a launcher start independent runs together") {
  // `srun -n 8 ./train --seed=$SLURM_PROCID`: eight runs on purpose, each a session of one.
  const scoped_env launched("OMPI_COMM_WORLD_SIZE", "8");
  const scoped_env alone("DP_RUN_ALONE", "1");
  CHECK(dp::dist::detail::launcher_size() == 0);
  CHECK(dp::dist::session{}.size() == 1);
  const scoped_env not_alone("DP_RUN_ALONE", "0");
  CHECK_THROWS_WITH_AS(dp::dist::session{}, doctest::Contains("or set DP_RUN_ALONE=1 for independent runs"),
                       dp::runtime_error);
}
