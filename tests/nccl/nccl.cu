// NCCL: the communicator over one GPU per rank (bootstrapped by dist::session), the same interface
// as the host communicators, and dp::parallel over the GPUs of one process. Built in CI with
// dp::nccl (and dp::mpi), run when a GPU is lent; the cases that need two GPUs say so and pass.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include <dp/dp.hpp>

namespace nn = dp::nn;
namespace dist = dp::dist;

namespace {
using mlp = nn::sequential<nn::linear<16, 32>, nn::batch_norm<32>, nn::relu, nn::linear<32, 4>>;

int argc_ = 1;
char arg0_[] = "dp_test_nccl";
char* argv0_[] = {arg0_, nullptr};
char** argv_ = argv0_;

dist::session& world() {
  static dist::session s{argc_, argv_};
  return s;
}
}  // namespace

TEST_CASE("the NCCL communicator of a session implements every collective, blocking and started") {
  dist::nccl_communicator c = world().make_nccl_communicator(0, {.timeout = std::chrono::seconds(20)});
  CHECK(c.size() == world().size());
  const float n = static_cast<float>(c.size());
  dp::tensor<float> t = dp::full<float>({1000}, 2.0f, dp::cuda(0));
  c.all_reduce(t, dist::reduce_op::sum);
  CHECK(t.to(dp::cpu()).to_vector()[999] == 2.0f * n);
  dp::tensor<double> d = dp::full<double>({7}, 3.0, dp::cuda(0));
  auto q = c.start_all_reduce(d, dist::reduce_op::sum);
  c.wait(q);
  CHECK(d.to(dp::cpu()).to_vector()[6] == 3.0 * n);
  CHECK(c.test(q));  // a waited request is done
  dp::tensor<std::int64_t> b = dp::full<std::int64_t>({3}, world().rank() == 0 ? 5 : 9, dp::cuda(0));
  c.broadcast(b, 0);
  CHECK(b.to(dp::cpu()).to_vector()[2] == 5);
  dp::tensor<float> all = dp::zeros<float>({4 * c.size()}, dp::cuda(0));
  c.all_gather(dp::full<float>({4}, 1.0f, dp::cuda(0)), all);
  CHECK(dp::sum(all).item() == doctest::Approx(4.0 * n));
  c.barrier();
  dist::any_communicator erased{c};
  auto e = erased.start_all_reduce(t, dist::reduce_op::max);
  erased.wait(e);
  CHECK(t.to(dp::cpu()).to_vector()[0] == 2.0f * n);
}

TEST_CASE("an aborted NCCL communicator refuses its next collective with the reason") {
  dist::nccl_communicator c = world().make_nccl_communicator(0, {});
  c.abort("replica 1 failed: test");
  dp::tensor<float> t = dp::zeros<float>({4}, dp::cuda(0));
  CHECK_THROWS_WITH_AS(c.all_reduce(t, dist::reduce_op::sum), doctest::Contains("aborted: replica 1 failed: test"),
                       dp::runtime_error);
}

TEST_CASE("parallel over the GPUs of one process equals one GPU on the whole batch") {
  const int gpus = dp::cuda_device_count();
  if (gpus < 2) {
    MESSAGE("one GPU here: the multi-GPU case needs two (passes without checking)");
    return;
  }
  nn::manual_seed(3);
  const mlp model;
  std::vector<dp::device> devs;
  for (int i = 0; i < gpus; ++i) {
    devs.push_back(dp::cuda(i));
  }
  dp::parallel<mlp> one{mlp(model), {dp::cuda(0)}};
  dp::parallel<mlp> many{mlp(model), devs};
  CHECK(many.communicator_name().find("NCCL") != std::string::npos);
  auto o1 = dp::optim::sgd(one, {.lr = 0.1});
  auto o2 = dp::optim::sgd(many, {.lr = 0.1});
  auto x = dp::randn<float>({37, 16}, dp::cuda(0), 4);
  dp::tensor<std::int64_t> y = dp::cast<std::int64_t>(dp::rand<float>({37}, dp::cuda(0), 5) * 3.99f);
  for (int s = 0; s < 5; ++s) {
    CHECK(many.backward(nn::cross_entropy, x, y) ==
          doctest::Approx(one.backward(nn::cross_entropy, x, y)).epsilon(1e-5));
    o1.step();
    o2.step();
  }
  // Every replica of `many` against the single GPU's parameters.
  std::vector<float> a;
  dp::detail::replica_access::for_each_replica(
      one, [&](std::size_t, const auto& w, const auto&) { a = w.to(dp::cpu()).to_vector(); });
  std::vector<std::vector<float>> b(devs.size());
  dp::detail::replica_access::for_each_replica(
      many, [&](std::size_t i, const auto& w, const auto&) { b[i] = w.to(dp::cpu()).to_vector(); });
  double worst = 0;
  for (const auto& r : b) {
    REQUIRE(r.size() == a.size());
    for (std::size_t i = 0; i < a.size(); ++i) {
      worst = std::max(worst, static_cast<double>(std::fabs(a[i] - r[i])));
    }
  }
  CHECK(worst < 1e-5);
}

TEST_CASE("deterministic: the GPUs of one process give the bits of one GPU") {
  const int gpus = dp::cuda_device_count();
  if (gpus < 2) {
    MESSAGE("one GPU here: the case needs two (passes without checking)");
    return;
  }
  auto run = [&](int n) {
    nn::manual_seed(9);
    std::vector<dp::device> devs;
    for (int i = 0; i < n; ++i) {
      devs.push_back(dp::cuda(i));
    }
    dp::parallel<mlp> par{mlp{}, devs, {.deterministic = true, .chunk = 6}};
    auto opt = dp::optim::adamw(par, {.lr = 1e-2});
    auto x = dp::randn<float>({40, 16}, dp::cuda(0), 4);
    dp::tensor<std::int64_t> y = dp::cast<std::int64_t>(dp::rand<float>({40}, dp::cuda(0), 5) * 3.99f);
    for (int s = 0; s < 10; ++s) {
      (void)par.backward(nn::cross_entropy, x, y);
      opt.step();
    }
    std::vector<float> w;
    nn::for_each_tensor(par.model(), [&](const std::string&, const auto& t) {
      for (auto v : t.value().to(dp::cpu()).to_vector()) {
        w.push_back(static_cast<float>(v));
      }
    });
    return w;
  };
  const auto one = run(1);
  const auto all = run(gpus);
  REQUIRE(one.size() == all.size());
  CHECK(std::memcmp(one.data(), all.data(), one.size() * sizeof(float)) == 0);
}
