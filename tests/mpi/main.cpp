// doctest under mpirun: every rank runs every test; the job passes only if every rank passes.
#define DOCTEST_CONFIG_IMPLEMENT
#include <filesystem>
#include <string>
#include <unistd.h>

#include <doctest/doctest.h>
#include <mpi.h>

#include "world.hpp"

namespace {
dp::dist::session* the_world = nullptr;
long job_id = 0;
}  // namespace

dp::dist::session& test::world() { return *the_world; }

std::string test::scratch_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() / ("dp_test_mpi_" + std::to_string(job_id) + "_" + name)).string();
}

int main(int argc, char** argv) {
  dp::dist::session world{argc, argv};
  the_world = &world;
  job_id = static_cast<long>(::getpid());
  MPI_Bcast(&job_id, 1, MPI_LONG, 0, MPI_COMM_WORLD);
  doctest::Context context(argc, argv);
  int failed = context.run() != 0 ? 1 : 0;
  int any = 0;
  MPI_Allreduce(&failed, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  if (world.rank() == 0) {
    std::printf("dp_test_mpi: %d ranks, %s\n", world.size(), any ? "FAILED on some rank" : "passed on every rank");
  }
  return any;
}
