// Open MPI's collectives for one step's gradient of the 784-512-512-10 MLP (669,706 floats), and
// the SGD update over all of it and over one rank's share: the figures behind the choice between
// an all-reduce with every rank updating every parameter (today) and a sharded update (reduce-
// scatter, each rank updates its share, all-gather the parameters). Plain MPI, no dp.
//
//   mpirun -np 2 --bind-to core build/benchmarks/bench_mpi_collectives
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <vector>

#include <mpi.h>

namespace {

int rank = 0, size = 1;

/// Median microseconds per call of `f` over 7 rounds of 200 calls (after 50 to warm up).
template <class F>
void report(const char* name, F f) {
  for (int i = 0; i < 50; ++i) {
    f();
  }
  std::vector<double> us;
  for (int round = 0; round < 7; ++round) {
    MPI_Barrier(MPI_COMM_WORLD);
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < 200; ++i) {
      f();
    }
    us.push_back(std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count() / 200);
  }
  std::sort(us.begin(), us.end());
  if (rank == 0) {
    std::printf("%-52s %8.1f us\n", name, us[us.size() / 2]);
  }
}

/// Waits by polling, as dp's MPI communicator does (it keeps a timeout).
void poll(int n, MPI_Request* q) {
  int done = 0;
  while (done == 0) {
    MPI_Testall(n, q, &done, MPI_STATUSES_IGNORE);
  }
}

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  constexpr int params = 784 * 512 + 512 + 512 * 512 + 512 + 512 * 10 + 10;
  const int share = (params + size - 1) / size;
  const int total = share * size;
  std::vector<float> grads(static_cast<std::size_t>(total), 1.0f), weights(grads.size(), 0.5f),
      momentum(grads.size(), 0.0f), received(grads.size()), mine(static_cast<std::size_t>(share));
  if (rank == 0) {
    std::printf("%d ranks, %d floats (%.2f MB), a share of %d\n", size, params, params * 4e-6, share);
  }
  report("MPI_Allreduce",
         [&] { MPI_Allreduce(MPI_IN_PLACE, grads.data(), total, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD); });
  report("MPI_Iallreduce, polled", [&] {
    MPI_Request q;
    MPI_Iallreduce(MPI_IN_PLACE, grads.data(), total, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD, &q);
    poll(1, &q);
  });
  report("MPI_Reduce_scatter_block",
         [&] { MPI_Reduce_scatter_block(grads.data(), mine.data(), share, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD); });
  report("MPI_Ireduce_scatter_block, polled", [&] {
    MPI_Request q;
    MPI_Ireduce_scatter_block(grads.data(), mine.data(), share, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD, &q);
    poll(1, &q);
  });
  report("reduce-scatter as MPI_Ialltoall + a local sum, polled", [&] {
    MPI_Request q;
    MPI_Ialltoall(grads.data(), share, MPI_FLOAT, received.data(), share, MPI_FLOAT, MPI_COMM_WORLD, &q);
    poll(1, &q);
    float* own = grads.data() + static_cast<std::ptrdiff_t>(rank) * share;
    for (int r = 0; r < size; ++r) {
      if (r != rank) {
        const float* other = received.data() + static_cast<std::ptrdiff_t>(r) * share;
        for (int i = 0; i < share; ++i) {
          own[i] += other[i];
        }
      }
    }
  });
  report("MPI_Iallgather of the shares, polled", [&] {
    MPI_Request q;
    MPI_Iallgather(MPI_IN_PLACE, share, MPI_FLOAT, weights.data(), share, MPI_FLOAT, MPI_COMM_WORLD, &q);
    poll(1, &q);
  });
  auto sgd = [&](int n) {
    for (int i = 0; i < n; ++i) {
      momentum[static_cast<std::size_t>(i)] =
          0.9f * momentum[static_cast<std::size_t>(i)] + grads[static_cast<std::size_t>(i)];
      weights[static_cast<std::size_t>(i)] -= 0.01f * momentum[static_cast<std::size_t>(i)];
    }
  };
  report("SGD with momentum, every parameter", [&] { sgd(params); });
  report("SGD with momentum, one share", [&] { sgd(share); });
  MPI_Finalize();
}
