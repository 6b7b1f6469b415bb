// A rank that stalls or dies: the others must fail with a clear error within the timeout, and the
// job must end (no hang), and the error must name the missing rank. Run as `mpirun -np N
// dp_mpi_faults stall|kill|eval_update|absent`; ctest checks the output.
//   stall: the last rank sleeps 3 s before its first step; the others' collective times out after
//          300 ms and names it (not each other).
//   kill:  the last rank kills itself with SIGKILL before its first step.
//   eval_update: every rank's forward calls nn::update in evaluation mode, which dp::parallel does
//          not synchronise: each rank refuses at once with dp's message (no collective waits).
//   absent: the last rank leaves before making its sharded loader (as after an error of its own);
//          the others' loader, whose agreement makes a communicator, fails after 300 ms.
//   refused: rank 0 marks its communicator failed, then calls an all-reduce, which is refused, and
//          drives MPI's progress; the collective must not have been started: the last rank's
//          all-reduce times out after 300 ms (it completed, with rank 0's value in it, when the
//          refusal came after MPI_Iallreduce).
//   app_finalizes: the application calls MPI_Finalize before the session ends; the job exits 0
//          (the session finalised a second time, which ended every rank with an error).
//   stall_workers: ranks x 2 local workers; the last rank's replicas sleep 3 s inside their first
//          step (tracing its forward), after the batch sizes were exchanged: the others' leaders
//          time out in the gradients' all-reduce and name the rank; their second replicas, which
//          wait for the leader, report its error (not a timeout of their own naming a local replica).
#include <chrono>
#include <csignal>
#include <cstdio>
#include <optional>
#include <string>
#include <thread>

#include <mpi.h>

#include <dp/dp.hpp>

namespace nn = dp::nn;
using mlp = nn::sequential<nn::linear<4, 8>, nn::relu, nn::linear<8, 2>>;

// Counts its calls in a buffer in either mode.
struct counting {
  nn::linear<4, 2> fc;
  nn::buffer<float> calls{dp::zeros<float>({})};
  auto forward(auto x) const {
    nn::update(calls, calls + 1.f);
    return fc(x);
  }
};

// Sleeps 3 s in its forward on the rank that sets `stall`.
bool stall = false;
struct sleepy {
  mlp net;
  auto forward(auto x) const {
    if (stall) {
      std::this_thread::sleep_for(std::chrono::seconds(3));
    }
    return net(x);
  }
};

/// Runs `steps`, timed from now, and prints how they ended on this rank; 1 for a dp error.
template <class Steps>
int report(const dp::dist::session& world, Steps&& steps) {
  const auto t0 = std::chrono::steady_clock::now();
  try {
    steps();
  } catch (const dp::error& e) {
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("rank %d: dp error after %.2f s: %s\n", world.rank(), s, e.what());
    std::fflush(stdout);
    return 1;
  }
  std::printf("rank %d: finished without an error\n", world.rank());
  return 0;
}

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "";
  std::optional<dp::dist::session> made;
  try {  // a session refused (a world of one under a launcher of several) says why, with no abort
    made.emplace(argc, argv,
                 mode == "absent" ? dp::dist::communicator_options{.timeout = std::chrono::milliseconds(300)}
                                  : dp::dist::communicator_options{});
  } catch (const dp::error& e) {
    std::printf("dp error making the session: %s\n", e.what());
    return 1;
  }
  dp::dist::session& world = *made;
  if (mode == "app_finalizes") {
    std::printf("rank %d: finalising MPI itself\n", world.rank());
    std::fflush(stdout);
    return MPI_Finalize();
  }
  if (mode == "refused") {
    auto c = world.make_communicator({.timeout = std::chrono::milliseconds(300)});
    auto t = dp::full<double>({1}, world.rank() == 0 ? 1.0 : 10.0);
    const int code = report(world, [&] {
      if (world.rank() == 0) {
        c.abort("dp: this test's failure on rank 0");
      }
      c.all_reduce(t, dp::dist::reduce_op::sum);
    });
    if (world.rank() == 0) {
      // Drives MPI's progress meanwhile, as any later MPI call would (a collective started despite
      // the refusal then completes on the others), until the others' timeout: exit aborts the job.
      const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(2);
      while (std::chrono::steady_clock::now() < until) {
        int flag = 0;
        MPI_Iprobe(MPI_ANY_SOURCE, MPI_ANY_TAG, MPI_COMM_WORLD, &flag, MPI_STATUS_IGNORE);
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      }
    } else {
      std::printf("rank %d: holds %g\n", world.rank(), t.to_vector()[0]);
    }
    return code;
  }
  if (mode == "count_mismatch") {
    auto c = world.make_communicator({.timeout = std::chrono::milliseconds(300)});
    auto t = dp::ones<float>({world.rank() == 0 ? 4 : 6});
    auto copy = c;  // shares the communicator, so its barrier is collective #1 of c's too
    copy.barrier();
    return report(world, [&] { c.all_reduce(t, dp::dist::reduce_op::sum); });
  }
  if (mode == "absent") {
    if (world.rank() == world.size() - 1) {
      std::printf("rank %d: left before making its loader\n", world.rank());
      std::fflush(stdout);
      return 0;
    }
    const dp::data::tensor_dataset<float, std::int64_t> data{dp::zeros<float>({8, 4}), dp::zeros<std::int64_t>({8})};
    return report(world, [&] { dp::data::loader loader{data, {.batch = 4}, world}; });
  }
  if (mode == "eval_update") {
    dp::parallel<counting> par{counting{}, world, {.comm = {.timeout = std::chrono::milliseconds(2000)}}};
    par.eval();
    return report(world, [&] {
      (void)par.backward(nn::mse_loss, dp::randn<float>({8, 4}, dp::cpu(), 1), dp::zeros<float>({8, 2}));
    });
  }
  if (mode == "stall_workers") {
    dp::parallel<sleepy> par{
        sleepy{}, world, {dp::cpu(0), dp::cpu(1)}, {.comm = {.timeout = std::chrono::milliseconds(300)}}};
    stall = world.rank() == world.size() - 1;
    return report(world, [&] {
      (void)par.backward(nn::cross_entropy, dp::randn<float>({8, 4}, dp::cpu(), 1), dp::zeros<std::int64_t>({8}));
    });
  }
  const bool kill = mode == "kill";
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
  return report(world, [&] {
    for (int step = 0; step < 3; ++step) {
      par.backward(nn::cross_entropy, x, y);
      opt.step();
    }
  });
}
