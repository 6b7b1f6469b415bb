// A rank that stalls or dies: the others must fail with a clear error within the timeout, and the
// job must end (no hang), and the error must name the missing rank. Run as `mpirun -np N
// dp_mpi_faults stall|kill`; ctest checks the output.
//   stall: the last rank sleeps 3 s before its first step; the others' collective times out after
//          300 ms and names it (not each other).
//   kill:  the last rank kills itself with SIGKILL before its first step.
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <thread>

#include <dp/dp.hpp>

namespace nn = dp::nn;
using mlp = nn::sequential<nn::linear<4, 8>, nn::relu, nn::linear<8, 2>>;

int main(int argc, char** argv) {
  dp::dist::session world{argc, argv};
  const bool kill = argc > 1 && std::strcmp(argv[1], "kill") == 0;
  dp::parallel<mlp> par{mlp{}, world, {.comm = {.timeout = std::chrono::milliseconds(kill ? 2000 : 300)}}};
  auto opt = dp::optim::sgd(par, {.lr = 0.1});
  auto x = dp::randn<float>({8, 4}, dp::cpu(), 1);
  dp::tensor<std::int64_t> y = dp::zeros<std::int64_t>({8});
  if (world.rank() == world.size() - 1) {
    if (kill) {
      std::raise(SIGKILL);
    }
    std::this_thread::sleep_for(std::chrono::seconds(3));
  }
  const auto t0 = std::chrono::steady_clock::now();
  try {
    for (int step = 0; step < 3; ++step) {
      par.backward(nn::cross_entropy, x, y);
      opt.step();
    }
  } catch (const dp::error& e) {
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("rank %d: dp error after %.2f s: %s\n", world.rank(), s, e.what());
    std::fflush(stdout);
    return 1;
  }
  std::printf("rank %d: finished without an error\n", world.rank());
  return 0;
}
