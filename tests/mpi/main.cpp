// doctest under mpirun: every rank runs every test; the job passes only if every rank passes.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>
#include <mpi.h>

#include "world.hpp"

namespace {
dp::dist::session* the_world = nullptr;
}

dp::dist::session& test::world() { return *the_world; }

int main(int argc, char** argv) {
  dp::dist::session world{argc, argv};
  the_world = &world;
  doctest::Context context(argc, argv);
  int failed = context.run() != 0 ? 1 : 0;
  int any = 0;
  MPI_Allreduce(&failed, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  if (world.rank() == 0) {
    std::printf("dp_test_mpi: %d ranks, %s\n", world.size(), any ? "FAILED on some rank" : "passed on every rank");
  }
  return any;
}
