#include <cstddef>
#include <cstdint>
#include <vector>

#include <doctest/doctest.h>

#include <dp/dp.hpp>

#include "parallel_models.hpp"

using namespace dp_test_parallel;  // the models and helpers of these tests

namespace {
struct settings_net {
  nn::linear<12, 10> a;
  nn::layer_norm<10> ln;
  nn::dropout drop{0.2f};
  nn::linear<10, 5> b;
  auto forward(auto x) const { return b(drop(dp::tanh(ln(a(x))))); }
};
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
