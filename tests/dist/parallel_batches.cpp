#include <chrono>
#include <cmath>
#include <cstdint>
#include <exception>
#include <limits>
#include <sstream>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include <doctest/doctest.h>

#include <dp/dp.hpp>

#include "parallel_models.hpp"

using namespace dp_test_parallel;  // the models and helpers of these tests

namespace {
struct dropout_net {
  nn::linear<6, 10> a;
  nn::dropout drop{0.5f};
  nn::linear<10, 3> b;
  auto forward(auto x) const { return b(drop(dp::tanh(a(x)))); }
};
struct scaled {
  nn::linear<4, 3> fc;
  auto forward(auto x, auto s) const { return fc(x) * s; }
};
struct two_heads {
  nn::linear<4, 3> a;
  nn::linear<4, 2> b;
  auto forward(auto x) const {
    return std::tuple{dp::nn::detail::materialize(a(x)), dp::nn::detail::materialize(b(x))};
  }
};
}  // namespace

TEST_CASE("in training mode dropout masks and gradients do not depend on the device count") {
  // batch_norm is left out: its batch statistics are per replica, as in PyTorch's DataParallel.
  nn::manual_seed(5);
  const dropout_net model;
  nn::trainer<dropout_net> single{model};
  dp::parallel<dropout_net> par{model, workers(3)};
  auto x = dp::randn<float>({20, 6}, dp::cpu(), 1);
  auto y = dp::cast<std::int64_t>(dp::rand<float>({20}, dp::cpu(), 2) * 2.99f);
  (void)single.backward(nn::cross_entropy, dp::tensor<float>(x), dp::tensor<std::int64_t>(y));
  (void)par.backward(nn::cross_entropy, dp::tensor<float>(x), dp::tensor<std::int64_t>(y));
  close(replica_grads(par, 0), dp::detail::trainer_access::flat_grads(single).to_vector(), 1e-6, 1e-7);
}

TEST_CASE("a training-mode par(x) draws the dropout masks of one device, call after call") {
  nn::manual_seed(6);
  const dropout_net model;
  dp::parallel<dropout_net> one{model, workers(1)}, three{model, workers(3)};
  auto x = dp::randn<float>({20, 6}, dp::cpu(), 4);
  for (int call = 0; call < 2; ++call) {  // the second call draws new masks, the same on both
    const nn::detail::eager_random_scope from(100 + static_cast<std::uint64_t>(call), 0);
    const auto a = one(x).to_vector();
    nn::detail::eager_random_state().step = 100 + static_cast<std::uint64_t>(call);
    const auto b = three(x).to_vector();
    CHECK(nn::detail::eager_random_state().step == 101 + static_cast<std::uint64_t>(call));
    close(b, a, 1e-6, 1e-7);  // a mask drawn differently would differ by whole activations
  }
}

TEST_CASE("36 samples over 7 workers, and a batch smaller than the device count") {
  nn::manual_seed(3);
  const classifier model;
  for (dp::index_t batch : {36, 3}) {
    single_and_parallel both{model, 7};
    auto& [single, par] = both;
    auto x = dp::randn<float>({batch, 12}, dp::cpu(), 1);
    auto y = labels(batch, 2);
    CHECK(par.backward(nn::cross_entropy, x, y) ==
          doctest::Approx(single.backward(nn::cross_entropy, x, y)).epsilon(1e-6));
    close(replica_grads(par, 6), dp::detail::trainer_access::flat_grads(single).to_vector(), 1e-6, 1e-7);
  }
}

TEST_CASE("cross_entropy with ignore_index: any device count gives one device's mean over the scored rows") {
  // Shards of 4 rows on 3 workers: the first all ignored, the second with one of four. The mean
  // divides by the batch's 7 scored rows; weighting each replica's own mean by its share of the
  // rows gave another loss (and NaN for the replica that scores nothing).
  nn::manual_seed(3);
  const classifier model;
  const auto x = dp::randn<float>({12, 12}, dp::cpu(), 1);
  const auto y = dp::from_vector<std::int64_t>({-1, -1, -1, -1, 0, -1, 2, 3, 4, 1, 0, 2});
  for (const auto& loss : {nn::cross_entropy_loss{.ignore_index = -1},
                           nn::cross_entropy_loss{.label_smoothing = 0.1f, .ignore_index = -1}}) {
    for (int n : {2, 3, 5}) {
      CAPTURE(n);
      single_and_parallel both{model, n};
      auto& [single, par] = both;
      CHECK(par.backward(loss, x, y) == doctest::Approx(single.backward(loss, x, y)).epsilon(1e-6));
      close(replica_grads(par, static_cast<std::size_t>(n) - 1),
            dp::detail::trainer_access::flat_grads(single).to_vector(), 1e-6, 1e-7);
    }
  }
  // Nothing to average over: the same error as one device's, before any replica computes.
  dp::parallel<classifier> par{model, workers(3)};
  const auto none = dp::full<std::int64_t>({12}, -1);
  CHECK_THROWS_WITH_AS((void)par.backward(nn::cross_entropy_loss{.ignore_index = -1}, x, none),
                       doctest::Contains("every target of the global batch of 12 rows is ignore_index (-1)"),
                       dp::value_error);
  CHECK(par.backward(nn::cross_entropy_loss{.reduction = nn::reduction::sum, .ignore_index = -1}, x, none) == 0.0);
}

TEST_CASE("par(x) of an empty batch is the model's output for no rows, as one device gives") {
  nn::manual_seed(3);
  const classifier model;
  single_and_parallel both{model, 3};
  auto& [single, par] = both;
  const auto x = dp::zeros<float>({0, 12});
  CHECK(single(x).shape() == dp::shape{0, 5});
  CHECK(par(x).shape() == dp::shape{0, 5});
}

TEST_CASE("training-mode batch_norm: running means are the weighted mean over replicas") {
  // The mean of the running means of equal shards is the running mean of the whole batch (the
  // update is linear in the batch mean), so the canonical model must match a single device.
  nn::manual_seed(4);
  const classifier model;
  nn::trainer<classifier> single{model};
  dp::parallel<classifier> par{model, workers(3)};
  auto x = dp::randn<float>({30, 12}, dp::cpu(), 1);
  auto y = labels(30, 2);
  (void)single.backward(nn::cross_entropy, x, y);
  (void)par.backward(nn::cross_entropy, x, y);
  close(par.model().bn.running_mean.value().to_vector(), single.model().bn.running_mean.value().to_vector(), 1e-6,
        1e-7);
  CHECK(par.model().bn.running_mean.value().to_vector() != std::vector<float>(16, 0.f));
  CHECK(par.model().bn.num_batches_tracked.value().item() == 1);
}

TEST_CASE("a steady step on host workers allocates no tensor memory (batch_norm buffers synchronised)") {
  nn::manual_seed(4);
  dp::parallel<classifier> par{classifier{}, {dp::cpu(0), dp::cpu(1), dp::cpu(2)}};
  auto opt = dp::optim::sgd(par, {.lr = 0.01, .momentum = 0.9});
  auto x = dp::randn<float>({20, 12}, dp::cpu(), 3);
  auto y = dp::from_vector<std::int64_t>(std::vector<std::int64_t>(20, 2));
  for (int i = 0; i < 3; ++i) {  // trace, then warm the pools
    (void)par.backward(nn::cross_entropy, x, y);
    opt.step();
  }
  const auto before = dp::counters();
  for (int i = 0; i < 20; ++i) {
    (void)par.backward(nn::cross_entropy, x, y);
    opt.step();
  }
  CHECK(dp::counters().allocations - before.allocations == 0);
}

TEST_CASE("two parallel models on the same workers stay independent") {
  nn::manual_seed(6);
  const classifier m1, m2;
  dp::parallel<classifier> a{m1, workers(2)}, b{m2, workers(2)};
  nn::trainer<classifier> sa{m1}, sb{m2};
  a.eval();
  b.eval();
  sa.eval();
  sb.eval();
  auto oa = dp::optim::sgd(a, {.lr = 0.1, .momentum = 0.9});
  auto ob = dp::optim::sgd(b, {.lr = 0.05});
  auto osa = dp::optim::sgd(sa, {.lr = 0.1, .momentum = 0.9});
  auto osb = dp::optim::sgd(sb, {.lr = 0.05});
  for (int i = 0; i < 5; ++i) {
    auto x = dp::randn<float>({10, 12}, dp::cpu(), 10 + i);
    auto y = labels(10, 20 + i);
    (void)a.backward(nn::cross_entropy, x, y);
    (void)b.backward(nn::cross_entropy, x, y);
    oa.step();
    (void)sb.backward(nn::cross_entropy, x, y);
    (void)sa.backward(nn::cross_entropy, x, y);
    ob.step();
    osa.step();
    osb.step();
  }
  close(replica_params(a, 1), dp::detail::trainer_access::flat_params(sa).to_vector(), 1e-5, 1e-6);
  close(replica_params(b, 1), dp::detail::trainer_access::flat_params(sb).to_vector(), 1e-5, 1e-6);
}

TEST_CASE("no_sync accumulates locally; stepping before synchronising is an error") {
  nn::manual_seed(7);
  const classifier model;
  single_and_parallel both{model, 2};
  auto& [single, par] = both;
  auto x1 = dp::randn<float>({8, 12}, dp::cpu(), 1), x2 = dp::randn<float>({8, 12}, dp::cpu(), 2);
  auto y = labels(8, 3);
  (void)par.backward(nn::cross_entropy, x1, y, dp::no_sync);
  auto opt = dp::optim::sgd(par, {.lr = 0.1});
  CHECK_THROWS_WITH_AS(opt.step(), doctest::Contains("no_sync"), dp::runtime_error);
  (void)par.backward(nn::cross_entropy, x2, y);
  (void)single.backward(nn::cross_entropy, x1, y, dp::no_sync);
  (void)single.backward(nn::cross_entropy, x2, y);
  close(replica_grads(par, 1), dp::detail::trainer_access::flat_grads(single).to_vector(), 1e-6, 1e-7);
  opt.step();
}

TEST_CASE("device lists with duplicates or mixed kinds are rejected") {
  CHECK_THROWS_WITH_AS((dp::parallel<classifier>{classifier{}, {dp::cpu(0), dp::cpu(1), dp::cpu(1)}}),
                       doctest::Contains("device cpu:1 appears twice in the device list {cpu:0, cpu:1, cpu:1}"),
                       dp::value_error);
  CHECK_THROWS_AS((dp::parallel<classifier>{classifier{}, {}}), dp::value_error);
}

TEST_CASE("a replica that fails stops the others with a clear error, and the next step works") {
  dp::parallel<classifier> par{classifier{}, workers(2)};
  auto x = dp::randn<float>({8, 12}, dp::cpu(), 1);
  auto bad = dp::from_vector<std::int64_t>({0, 1, 2, 3, 0, 1, 2, 9});  // 9: only replica 1's shard
  // replica 1 fails; replica 0, waiting in the gradient all-reduce, is released (instead of waiting
  // for ever) and the original error is what the caller sees
  CHECK_THROWS_WITH_AS(
      (void)par.backward(nn::cross_entropy, x, bad),
      doctest::Contains("the target of row 7 is 9, outside [0, 5)"),  // the batch's row, not the shard's 3
      dp::value_error);
  CHECK(par.gradients() == nn::grad_state::none);
  CHECK_NOTHROW((void)par.backward(nn::cross_entropy, x, labels(8, 1)));
}

namespace {
struct offset_classifier {
  nn::linear<12, 5> fc;
  auto forward(auto offset, auto x) const { return fc(x) + offset; }
};
}  // namespace

TEST_CASE("a shape error inside a replica says which rows of which batch its shapes are") {
  for (const bool deterministic : {false, true}) {
    dp::parallel<classifier> par{classifier{}, workers(2), {.deterministic = deterministic, .chunk = 4}};
    auto x = dp::randn<float>({8, 11}, dp::cpu(), 1);  // 11 features where the model takes 12
    // Both replicas fail; whichever is reported first, it names its rows of the batch.
    std::string what;
    try {
      (void)par.backward(nn::cross_entropy, x, labels(8, 1));
    } catch (const dp::shape_error& e) {
      what = e.what();
    }
    CHECK(what.find("the input has shape {4, 11}") != std::string::npos);
    const bool first =
        what.find("(in dp::parallel's replica 0, on rows [0, 4) of the batch of shape {8, 11})") != std::string::npos;
    const bool second =
        what.find("(in dp::parallel's replica 1, on rows [4, 8) of the batch of shape {8, 11})") != std::string::npos;
    CHECK_MESSAGE(first != second, what);
  }
  // The batch is the first scattered argument, not the first argument (a dp::replicated offset here).
  dp::parallel<offset_classifier> par{offset_classifier{}, workers(2)};
  std::string what;
  try {
    (void)par.backward(nn::cross_entropy, dp::replicated(dp::zeros<float>({5})),
                       dp::randn<float>({8, 11}, dp::cpu(), 1), labels(8, 1));
  } catch (const dp::shape_error& e) {
    what = e.what();
  }
  CHECK_MESSAGE(what.find("of the batch of shape {8, 11})") != std::string::npos, what);  // it said {5}
}

TEST_CASE("a value error inside a replica says which rows of which batch it ran on") {
  // 5 rows over 4 workers leave replicas 1 to 3 one row each, too few for batch_norm in training:
  // the error named a shape of {1, 16} the user never passed (one device takes the batch).
  dp::parallel<classifier> par{classifier{}, workers(4)};
  std::string what;
  try {
    (void)par.backward(nn::cross_entropy, dp::randn<float>({5, 12}, dp::cpu(), 1), labels(5, 1));
  } catch (const dp::value_error& e) {
    what = e.what();
  }
  CHECK_MESSAGE(what.find("batch_norm<16>: training needs more than one value per channel") != std::string::npos, what);
  const auto names = [&](const char* replica) { return what.find(replica) != std::string::npos; };
  CHECK_MESSAGE((names("(in dp::parallel's replica 1, on rows [2, 3) of the batch of shape {5, 12})") ||
                 names("(in dp::parallel's replica 2, on rows [3, 4) of the batch of shape {5, 12})") ||
                 names("(in dp::parallel's replica 3, on rows [4, 5) of the batch of shape {5, 12})")),
                what);
}

TEST_CASE("on one device parallel is the bare trainer: the same passes, no copy") {
  nn::manual_seed(8);
  const classifier model;
  nn::trainer<classifier> single{model};
  dp::parallel<classifier> par{model, workers(1)};
  auto x = dp::randn<float>({16, 12}, dp::cpu(), 1);
  auto y = labels(16, 2);
  (void)single.backward(nn::cross_entropy, x, y);
  (void)par.backward(nn::cross_entropy, x, y);
  auto c0 = dp::counters();
  (void)single.backward(nn::cross_entropy, x, y);
  auto c1 = dp::counters();
  (void)par.backward(nn::cross_entropy, x, y);
  auto c2 = dp::counters();
  CHECK(c2.passes - c1.passes == c1.passes - c0.passes);
  CHECK(c2.gemms - c1.gemms == c1.gemms - c0.gemms);
  CHECK(c2.pool_hits - c1.pool_hits == c1.pool_hits - c0.pool_hits);
}

TEST_CASE("one host worker that is not worker 0 takes host tensors like any other (cpu:1 alone)") {
  nn::manual_seed(8);
  const classifier model;
  nn::trainer<classifier> single{model};
  dp::parallel<classifier> par{model, {dp::cpu(1)}};
  auto x = dp::randn<float>({16, 12}, dp::cpu(), 1);
  auto y = labels(16, 2);
  CHECK(par.backward(nn::cross_entropy, x, y) == single.backward(nn::cross_entropy, x, y));
  par.eval();
  single.eval();
  dp::tensor<float> a = par(x), b = single(x);
  CHECK(a.to_vector() == b.to_vector());
}

TEST_CASE("replicated arguments, tuple outputs and printing") {
  nn::manual_seed(9);
  const scaled m;
  dp::parallel<scaled> par{m, workers(3)};
  auto x = dp::randn<float>({7, 4}, dp::cpu(), 1);
  dp::tensor<float> got = par(x, dp::replicated(2.f));
  dp::tensor<float> want = m.fc(x) * 2.f;
  close(got.to_vector(), want.to_vector(), 1e-6, 1e-6);
  dp::parallel<two_heads> heads{two_heads{}, workers(2)};
  auto [ha, hb] = heads(x);
  CHECK(ha.shape() == dp::shape{7, 3});
  CHECK(hb.shape() == dp::shape{7, 2});
  std::ostringstream os;
  os << par;
  CHECK(os.str() == "parallel<scaled>: 3 replicas on cpu:0 cpu:1 cpu:2, 15 parameters (0 KiB), local communicator");
}

TEST_CASE("a replica that throws something not derived from std::exception releases the others") {
  // Replica 1 throws an int while replica 0 waits in a collective with a one-minute timeout: the
  // abort must reach replica 0 at once, and the int is what the caller sees.
  dp::dist::detail::replica_group<classifier> group{
      classifier{}, workers(2), {.timeout = std::chrono::minutes(1)}, nullptr};
  const auto t0 = std::chrono::steady_clock::now();
  auto job = [&](int i) {
    if (i == 1) {
      throw 42;
    }
    group.comm(0).barrier();
  };
  CHECK_THROWS_AS(group.run(job), int);
  CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(10));
  auto fine = [&](int i) { group.comm(i).barrier(); };
  CHECK_NOTHROW(group.run(fine));  // recovered for the next step
}

TEST_CASE("a non-finite loss stops parallel training on every replica, unless allowed") {
  dp::parallel<classifier> par{classifier{}, workers(2)};
  auto x = dp::randn<float>({8, 12}, dp::cpu(), 1);
  x[6][0] = std::numeric_limits<float>::infinity();  // only replica 1's shard
  CHECK_THROWS_WITH_AS((void)par.backward(nn::cross_entropy, x, labels(8, 1)), doctest::Contains("is NaN"),
                       dp::value_error);
  CHECK(par.gradients() == nn::grad_state::none);
  dp::parallel<classifier> lenient{classifier{}, workers(2), {.allow_non_finite_loss = true}};
  CHECK(std::isnan(lenient.backward(nn::cross_entropy, x, labels(8, 1))));
}

namespace {
struct sequence_norm {  // batch_norm over [N, C, L]: a shard of one sample has L values per channel
  using value_type = float;
  nn::batch_norm<2> bn;
  auto forward(auto x) const { return bn(x); }
};
struct linear_norm {
  nn::linear<3, 4> fc;
  nn::batch_norm<4> bn;
  auto forward(auto x) const { return bn(fc(x)); }
};
/// Every replica's (running_mean[0], num_batches_tracked).
template <class P>
std::vector<std::pair<float, std::int64_t>> replica_statistics(P& par) {
  std::vector<std::pair<float, std::int64_t>> out;
  dp::detail::replica_access::update_model(par, [&](auto& m) {
    out.emplace_back(m.bn.running_mean.value().to_vector()[0], m.bn.num_batches_tracked.value().item());
  });
  return out;
}
}  // namespace

TEST_CASE("a replica without samples counts the step: the next step's dropout masks are one device's") {
  nn::manual_seed(5);
  const dropout_net model;
  nn::trainer<dropout_net> single{model};
  dp::parallel<dropout_net> par{model, workers(3)};
  // Two samples over three workers: replica 2 has none in the first step.
  auto x1 = dp::randn<float>({2, 6}, dp::cpu(), 1);
  auto y1 = dp::from_vector<std::int64_t>({0, 1});
  (void)single.backward(nn::cross_entropy, x1, y1);
  (void)par.backward(nn::cross_entropy, x1, y1);
  CHECK(par.steps() == 1);
  auto x = dp::randn<float>({21, 6}, dp::cpu(), 2);
  dp::tensor<std::int64_t> y = dp::cast<std::int64_t>(dp::rand<float>({21}, dp::cpu(), 3) * 2.99f);
  CHECK(par.backward(nn::cross_entropy, x, y) ==
        doctest::Approx(single.backward(nn::cross_entropy, x, y)).epsilon(1e-6));
  close(replica_grads(par, 0), dp::detail::trainer_access::flat_grads(single).to_vector(), 1e-6, 1e-7);
}

TEST_CASE("a step that fails puts back the buffers of a replica without samples too") {
  nn::trainer<sequence_norm> single{sequence_norm{}};
  dp::parallel<sequence_norm> par{sequence_norm{}, workers(3)};
  auto bad = dp::randn<float>({2, 2, 3}, dp::cpu(), 1);  // shards of 1, 1 and 0 samples
  bad[0][0][0] = std::numeric_limits<float>::quiet_NaN();
  const auto target = dp::zeros<float>({2, 2, 3});
  CHECK_THROWS_AS((void)par.backward(nn::mse_loss, bad, target), dp::value_error);
  for (const auto& [mean, tracked] : replica_statistics(par)) {
    CHECK(mean == 0.0f);  // the synchronised NaN statistics were put back on replica 2 as well
    CHECK(tracked == 0);
  }
  auto good = dp::randn<float>({2, 2, 3}, dp::cpu(), 2);
  (void)single.backward(nn::mse_loss, good, target);
  (void)par.backward(nn::mse_loss, good, target);
  const float want = single.model().bn.running_mean.value().to_vector()[0];
  for (const auto& [mean, tracked] : replica_statistics(par)) {
    CHECK(mean == doctest::Approx(want).epsilon(1e-6));
    CHECK(tracked == 1);
  }
}

TEST_CASE("a training-mode par(x) that fails on some replicas changes no replica's buffers") {
  dp::parallel<linear_norm> par{linear_norm{}, workers(3)};
  auto x = dp::randn<float>({4, 3}, dp::cpu(), 1);  // shards of 2, 1 and 1: batch_norm needs two rows
  CHECK_THROWS_AS((void)par(x), dp::value_error);
  for (const auto& [mean, tracked] : replica_statistics(par)) {
    CHECK(mean == 0.0f);
    CHECK(tracked == 0);
  }
}
