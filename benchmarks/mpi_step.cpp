// dp::parallel over MPI ranks: the large MLP step (784-512-512-10, global batch 256, SGD with
// momentum), each rank one thread and its share of the batch. Run as `mpirun -np N bench_mpi_step`;
// rank 0 prints one JSON object:
//   steps_per_s           whole training steps (forward, loss, backward, all-reduce, update)
//   compute_steps_per_s   the same steps with dp::no_sync (no gradient all-reduce): the compute alone
//   allreduce_ms          dp's gradient all-reduce of one step alone (its buckets, through the
//                         communicator dp::parallel uses)
//   raw_allreduce_ms      one MPI_Allreduce of the same bytes
//   bytes                 gradient bytes all-reduced per step
//   det_steps_per_s       whole steps in the deterministic mode (chunks of 128 samples: one per replica)
//   workers2_steps_per_s, workers2_det_steps_per_s   (1 rank only) 2 host workers x 1 thread in one
//                         process, default and deterministic mode
// benchmarks/run runs it at 1 and 2 ranks beside PyTorch DDP (compare/torch_ddp.py).
#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <vector>

#include <mpi.h>

#include <dp/dp.hpp>

namespace nn = dp::nn;
using large_mlp = nn::sequential<nn::linear<784, 512>, nn::relu, nn::linear<512, 512>, nn::relu, nn::linear<512, 10>>;
using clock_type = std::chrono::steady_clock;

namespace {

/// The seconds one call of `f` takes: calls repeated until they last `min_s`.
template <class F>
double seconds_per_call(F& f, double min_s) {
  int n = 0;
  const auto t0 = clock_type::now();
  double s = 0;
  // Every rank must make the same number of calls (they are collectives): rank 0 decides.
  for (int go = 1; go != 0; ++n) {
    f();
    s = std::chrono::duration<double>(clock_type::now() - t0).count();
    go = s < min_s ? 1 : 0;
    MPI_Bcast(&go, 1, MPI_INT, 0, MPI_COMM_WORLD);
  }
  return s / n;
}

/// The median over `runs` of each function's seconds per call, the functions taking turns run by
/// run, so that a compared pair sees the same machine (a shared VM's speed drifts over seconds).
template <class... F>
std::array<double, sizeof...(F)> interleaved_medians(int runs, double min_s, F&&... f) {
  std::array<std::vector<double>, sizeof...(F)> per_call;
  for (int r = 0; r < runs; ++r) {
    std::size_t k = 0;
    ((per_call[k++].push_back(seconds_per_call(f, min_s))), ...);
  }
  std::array<double, sizeof...(F)> out{};
  for (std::size_t k = 0; k < out.size(); ++k) {
    std::sort(per_call[k].begin(), per_call[k].end());
    out[k] = per_call[k][per_call[k].size() / 2];
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  dp::dist::session world{argc, argv};
  dp::set_num_threads(1);
  const dp::index_t global = 256;
  // The deterministic rows split the batch in chunks of 128 (below): each rank's share must be whole chunks.
  if (global % (128 * world.size()) != 0) {
    if (world.rank() == 0) {
      std::fprintf(stderr,
                   "bench_mpi_step: runs on 1 or 2 ranks (a global batch of %lld in chunks of 128 per rank), "
                   "not %d\n",
                   static_cast<long long>(global), world.size());
    }
    return 2;
  }
  const auto [lo, hi] = dp::data::even_part(global, world.rank(), world.size());
  auto x_all = dp::randn<float>({global, 784}, dp::cpu(), 1);
  auto y_all = dp::tensor<std::int64_t>(dp::cast<std::int64_t>(dp::rand<float>({global}, dp::cpu(), 2) * 9.99f));
  const dp::tensor<float> x = x_all.slice(0, lo, hi).contiguous();
  const dp::tensor<std::int64_t> y = y_all.slice(0, lo, hi).contiguous();

  nn::manual_seed(0);
  dp::parallel<large_mlp> par{large_mlp{}, world};
  auto opt = dp::optim::sgd(par, {.lr = 0.01, .momentum = 0.9});
  for (int i = 0; i < 5; ++i) {
    par.backward(nn::cross_entropy, x, y);
    opt.step();
  }
  // The deterministic mode on the same ranks (each share, 256 / ranks, is whole chunks of 128).
  nn::manual_seed(0);
  dp::parallel<large_mlp> det{large_mlp{}, world, {.deterministic = true, .chunk = dp::index_t{128}}};
  auto det_opt = dp::optim::sgd(det, {.lr = 0.01, .momentum = 0.9});
  // The compute alone on a copy that is never stepped: its no_sync gradients pile up there, not in
  // the next step of `par`.
  nn::manual_seed(0);
  dp::parallel<large_mlp> compute{large_mlp{}, world};
  auto step = [&](auto& p, auto& o) {
    p.backward(nn::cross_entropy, x, y);
    o.step();
  };
  const auto [step_s, compute_s, det_s] = interleaved_medians(
      5, 0.4, [&] { step(par, opt); }, [&] { compute.backward(nn::cross_entropy, x, y, dp::no_sync); },
      [&] { step(det, det_opt); });
  // One process, 2 host workers of one thread each: default against deterministic.
  double workers2_s = 0, workers2_det_s = 0;
  if (world.size() == 1) {
    nn::manual_seed(0);
    dp::parallel<large_mlp> two{large_mlp{}, {dp::cpu(0), dp::cpu(1)}};
    nn::manual_seed(0);
    dp::parallel<large_mlp> two_det{
        large_mlp{}, {dp::cpu(0), dp::cpu(1)}, {.deterministic = true, .chunk = dp::index_t{128}}};
    auto two_opt = dp::optim::sgd(two, {.lr = 0.01, .momentum = 0.9});
    auto two_det_opt = dp::optim::sgd(two_det, {.lr = 0.01, .momentum = 0.9});
    const auto t = interleaved_medians(5, 0.4, [&] { step(two, two_opt); }, [&] { step(two_det, two_det_opt); });
    workers2_s = t[0];
    workers2_det_s = t[1];
  }

  // The all-reduce alone: the flat gradient in dp::parallel's buckets, through the same kind of
  // communicator, against one MPI_Allreduce of the same bytes.
  dp::index_t n = 0;  // the flat gradient buffer: every parameter, each aligned as dp::parallel's
  for (const auto& e : par.layout()) {
    n = std::max(n, e.offset + e.shape.numel());
  }
  auto grads = dp::randn<float>({n}, dp::cpu(), 3);
  dp::dist::mpi_communicator comm = world.make_communicator({});
  const auto buckets = dp::dist::make_buckets(par.layout(), n, sizeof(float), dp::parallel_options{}.bucket_bytes,
                                              dp::parallel_options{}.first_bucket_bytes);
  const auto [dp_ar, raw_ar] = interleaved_medians(
      5, 0.4,
      [&] {
        for (const auto& b : buckets) {
          dp::tensor<float> part = grads.slice(0, b.begin, b.end);
          comm.all_reduce(part, dp::dist::reduce_op::sum);
        }
      },
      [&] { MPI_Allreduce(MPI_IN_PLACE, grads.data(), static_cast<int>(n), MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD); });
  if (world.rank() == 0) {
    std::printf(
        "{\"ranks\": %d, \"steps_per_s\": %.3f, \"compute_steps_per_s\": %.3f, \"allreduce_ms\": %.4f, "
        "\"raw_allreduce_ms\": %.4f, \"bytes\": %lld, \"buckets\": %zu, \"det_steps_per_s\": %.3f, "
        "\"workers2_steps_per_s\": %.3f, \"workers2_det_steps_per_s\": %.3f}\n",
        world.size(), 1.0 / step_s, 1.0 / compute_s, dp_ar * 1e3, raw_ar * 1e3,
        static_cast<long long>(dp::nn::parameter_count(par.model()) * sizeof(float)), buckets.size(), 1.0 / det_s,
        workers2_s > 0 ? 1.0 / workers2_s : 0.0, workers2_det_s > 0 ? 1.0 / workers2_det_s : 0.0);
  }
}
