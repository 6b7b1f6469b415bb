#include <chrono>
#include <cmath>
#include <limits>
#include <sstream>
#include <string>

#include <doctest/doctest.h>

#include <dp/dp.hpp>

namespace nn = dp::nn;

namespace {

struct classifier {
  nn::linear<12, 16> fc1;
  nn::batch_norm<16> bn;
  nn::linear<16, 8> fc2;
  nn::dropout drop{0.2f};
  nn::linear<8, 5> fc3;
  auto forward(auto x) const { return fc3(drop(dp::gelu(fc2(dp::relu(bn(fc1(x))))))); }
};

struct dropout_net {
  nn::linear<6, 10> a;
  nn::dropout drop{0.5f};
  nn::linear<10, 3> b;
  auto forward(auto x) const { return b(drop(dp::tanh(a(x)))); }
};
struct settings_net {
  nn::linear<12, 10> a;
  nn::layer_norm<10> ln;
  nn::dropout drop{0.2f};
  nn::linear<10, 5> b;
  auto forward(auto x) const { return b(drop(dp::tanh(ln(a(x))))); }
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

std::vector<dp::device> workers(int n) {
  std::vector<dp::device> d;
  for (int i = 0; i < n; ++i) {
    d.push_back(dp::cpu(i));
  }
  return d;
}

// One device and `n` workers with copies of the same model, both in evaluation mode (batch_norm then
// normalises by the same running statistics, so their results can be compared).
struct single_and_parallel {
  single_and_parallel(const classifier& model, int n) : single{model}, par{model, workers(n)} {
    single.eval();
    par.eval();
  }
  nn::trainer<classifier> single;
  dp::parallel<classifier> par;
};

dp::tensor<std::int64_t> labels(dp::index_t n, std::uint64_t seed) {
  return dp::cast<std::int64_t>(dp::rand<float>({n}, dp::cpu(), seed) * 4.99f);
}

void close(const std::vector<float>& got, const std::vector<float>& want, double rel, double abs) {
  REQUIRE(got.size() == want.size());
  int bad = 0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    if (!(std::fabs(got[i] - want[i]) <= abs + rel * std::fabs(want[i]))) {
      if (bad++ < 3) {
        FAIL_CHECK("element " << i << ": " << got[i] << " vs " << want[i]);
      }
    }
  }
  CHECK(bad == 0);
}

template <class Owner>
std::vector<float> replica_grads(Owner& p, std::size_t r) {
  std::vector<float> out;
  dp::detail::replica_access::for_each_replica(p, [&](std::size_t i, const auto&, const auto& g) {
    if (i == r) {
      out = g.to_vector();
    }
  });
  return out;
}
template <class Owner>
std::vector<float> replica_params(Owner& p, std::size_t r) {
  std::vector<float> out;
  dp::detail::replica_access::for_each_replica(p, [&](std::size_t i, const auto& w, const auto&) {
    if (i == r) {
      out = w.to_vector();
    }
  });
  return out;
}

}  // namespace

// Replicas are reached only through dp::detail::replica_access (optimizers, checkpoints): the
// public API of neither parallel nor trainer can touch a replica's parameters, gradients or model,
// or mark gradients ready without a backward.
struct replica_visitor {
  void operator()(std::size_t, const dp::tensor<float>&, const dp::tensor<float>&) const {}
};
struct model_visitor {
  void operator()(classifier&) const {}
};
template <class P>
constexpr bool replicas_public =
    requires(P& p, replica_visitor v) { p.for_each_replica(v); } ||
    requires(P& p, model_visitor m) { p.update_model(m); } || requires(P& p) { p.mutable_model(); } ||
    requires(P& p) { p.flat_params(); } || requires(P& p) { p.flat_grads(); } ||
    requires(P& p) { p.set_gradients(nn::grad_state::complete); } || requires(P& p) { p.restore_steps(0); };
// The detector's control: a type with one such public member is seen.
struct exposes_one {
  classifier& mutable_model();
};

TEST_CASE("no public member of parallel or trainer reaches a replica's state") {
  CHECK(replicas_public<exposes_one>);
  CHECK_FALSE(replicas_public<dp::parallel<classifier>>);
  CHECK_FALSE(replicas_public<nn::trainer<classifier>>);
  CHECK(dp::detail::replica_access::visitable<dp::parallel<classifier>, replica_visitor>);
  CHECK(dp::optim::parameter_owner<dp::parallel<classifier>>);
  CHECK(dp::optim::parameter_owner<nn::trainer<classifier>>);
}

TEST_CASE("the canonical model is read-only: a write through par.model() is refused and no replica changes") {
  // Such a write would reach replica 0's memory alone: the replicas would then train different models.
  nn::manual_seed(9);
  dp::parallel<classifier> par{classifier{}, workers(2)};
  const auto before = replica_params(par, 0);
  REQUIRE(replica_params(par, 1) == before);
  const auto refused = doctest::Contains("the replicas would drift apart");
  dp::tensor<float> w = par.model().fc1.weight.value();
  CHECK_THROWS_WITH_AS(w += 1.f, refused, dp::value_error);
  CHECK_THROWS_WITH_AS(w.fill(0.f), refused, dp::value_error);
  CHECK_THROWS_WITH_AS(w.slice(0, 0, 2) = dp::zeros<float>({2, 12}), refused, dp::value_error);
  CHECK_THROWS_WITH_AS(w.t() = dp::zeros<float>({12, 16}), refused, dp::value_error);
  dp::tensor<float> mean = par.model().bn.running_mean.value();
  CHECK_THROWS_WITH_AS(mean.assign(dp::ones<float>({16})), refused, dp::value_error);
  dp::tensor<std::int64_t> batches = par.model().bn.num_batches_tracked.value();
  CHECK_THROWS_WITH_AS(batches += std::int64_t{1}, refused, dp::value_error);
  // nn::update is forward's way to change a buffer; between steps it is a write like the others.
  CHECK_THROWS_WITH_AS(nn::update(par.model().bn.running_mean, dp::ones<float>({16})), refused, dp::value_error);
  CHECK(replica_params(par, 0) == before);
  CHECK(replica_params(par, 1) == before);
  CHECK(mean.to_vector() == std::vector<float>(16, 0.f));
  CHECK(batches.item() == 0);
  // A clone is the caller's own memory.
  dp::tensor<float> mine = w.clone();
  mine += 1.f;
  CHECK(mine.to_vector()[0] == w.to_vector()[0] + 1.f);
}

TEST_CASE("edit runs once on the canonical model and copies it to every replica: training goes on as on one device") {
  nn::manual_seed(10);
  const classifier model;
  nn::trainer<classifier> single{model};
  dp::parallel<classifier> par{model, workers(3)};
  int calls = 0;
  const auto change = [&](classifier& m) {
    ++calls;
    m.fc1.weight.assign(dp::clamp(m.fc1.weight.value(), -0.1f, 0.1f));
    const nn::seed_scope seed(5);
    m.fc2 = nn::linear<16, 8>{};  // re-initialised in place
    m.bn.running_mean.assign(dp::full<float>({16}, 0.5f));
  };
  single.edit(change);
  par.edit(change);
  CHECK(calls == 2);  // once each: the other replicas copy, they do not run f
  const auto edited = replica_params(single, 0);
  nn::trainer<classifier> unedited{model};
  CHECK(edited != replica_params(unedited, 0));
  for (std::size_t r = 0; r < 3; ++r) {
    CAPTURE(r);
    CHECK(replica_params(par, r) == edited);
  }
  // Evaluation mode: batch_norm normalises by the edited running statistics on every replica (batch
  // statistics would be each replica's own), so a replica that missed the edit would train apart.
  single.eval();
  par.eval();
  auto so = dp::optim::sgd(single, {.lr = 0.05, .momentum = 0.9});
  auto po = dp::optim::sgd(par, {.lr = 0.05, .momentum = 0.9});
  for (int step = 0; step < 3; ++step) {
    auto x = dp::randn<float>({12, 12}, dp::cpu(), 40 + step);
    auto y = labels(12, 50 + step);
    (void)single.backward(nn::cross_entropy, x, y);
    so.step();
    (void)par.backward(nn::cross_entropy, x, y);
    po.step();
  }
  for (std::size_t r = 0; r < 3; ++r) {
    CAPTURE(r);
    close(replica_params(par, r), replica_params(single, 0), 1e-5, 1e-6);
  }
  close(par.model().bn.running_mean.value().to_vector(), single.model().bn.running_mean.value().to_vector(), 1e-5,
        1e-6);
}

TEST_CASE("edit may change module settings: every replica takes them, and training goes on as on one device") {
  nn::manual_seed(12);
  const settings_net model;
  nn::trainer<settings_net> single{model}, unedited{model};
  dp::parallel<settings_net> par{model, workers(3)};
  auto so = dp::optim::sgd(single, {.lr = 0.05, .momentum = 0.9});
  auto uo = dp::optim::sgd(unedited, {.lr = 0.05, .momentum = 0.9});
  auto po = dp::optim::sgd(par, {.lr = 0.05, .momentum = 0.9});
  const auto step = [&](int k) {
    auto x = dp::randn<float>({12, 12}, dp::cpu(), 70 + k);
    auto y = labels(12, 80 + k);
    (void)single.backward(nn::cross_entropy, x, y);
    so.step();
    (void)unedited.backward(nn::cross_entropy, x, y);
    uo.step();
    (void)par.backward(nn::cross_entropy, x, y);
    po.step();
  };
  step(0);  // traced with the first settings
  const auto change = [](settings_net& m) {
    m.drop.p = 0.6f;
    m.drop.seed = 77;
    m.ln.eps = 0.5f;
  };
  single.edit(change);
  par.edit(change);
  CHECK(par.model().drop.p == 0.6f);
  for (int k = 1; k < 4; ++k) {
    step(k);
  }
  // A replica that kept the old dropout or layer_norm settings would train apart from one device.
  for (std::size_t r = 0; r < 3; ++r) {
    CAPTURE(r);
    close(replica_params(par, r), replica_params(single, 0), 1e-5, 1e-6);
  }
  CHECK(replica_params(single, 0) != replica_params(unedited, 0));  // and the settings did change training
}

TEST_CASE("an edit that throws halfway leaves every replica holding the same model") {
  nn::manual_seed(11);
  dp::parallel<classifier> par{classifier{}, workers(2)};
  CHECK_THROWS_WITH_AS(par.edit([](classifier& m) {
    m.fc1.weight.assign(dp::zeros<float>({16, 12}));
    m.fc2.weight.assign(dp::zeros<float>({3, 3}));  // the wrong shape: throws after fc1 was written
  }),
                       doctest::Contains("shape"), dp::shape_error);
  CHECK(par.model().fc1.weight.value().to_vector() == std::vector<float>(16 * 12, 0.f));
  CHECK(replica_params(par, 1) == replica_params(par, 0));
}

TEST_CASE("forward, gradients and 10 adamw steps equal the single-device run for 1-4 workers and any batch") {
  for (int devices : {1, 2, 3, 4}) {
    for (dp::index_t batch : {1, 7, 36, 256}) {
      CAPTURE(devices);
      CAPTURE(batch);
      nn::manual_seed(11);
      const classifier model;
      single_and_parallel both{model, devices};  // forward in evaluation mode first
      auto& [single, par] = both;
      auto x = dp::randn<float>({batch, 12}, dp::cpu(), 100 + batch);
      auto y = labels(batch, 200 + batch);
      dp::tensor<float> out_single = single(x), out_par = par(x);
      close(out_par.to_vector(), out_single.to_vector(), 1e-6, 1e-6);
      // gradients (training mode: batch_norm uses batch statistics, so compare in evaluation mode
      // where the result must not depend on the split)
      const double ls = single.backward(nn::cross_entropy, x, y);
      const double lp = par.backward(nn::cross_entropy, x, y);
      CHECK(lp == doctest::Approx(ls).epsilon(1e-6));
      for (std::size_t r = 0; r < par.replica_count(); ++r) {
        close(replica_grads(par, r), dp::detail::trainer_access::flat_grads(single).to_vector(), 1e-6, 1e-7);
      }
      auto opt_s = dp::optim::adamw(single, {.lr = 1e-2});
      auto opt_p = dp::optim::adamw(par, {.lr = 1e-2});
      opt_s.step();
      opt_p.step();
      for (int step = 1; step < 10; ++step) {
        (void)single.backward(nn::cross_entropy, x, y);
        (void)par.backward(nn::cross_entropy, x, y);
        opt_s.step();
        opt_p.step();
      }
      for (std::size_t r = 0; r < par.replica_count(); ++r) {
        close(replica_params(par, r), dp::detail::trainer_access::flat_params(single).to_vector(), 1e-5, 1e-6);
      }
    }
  }
}

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
