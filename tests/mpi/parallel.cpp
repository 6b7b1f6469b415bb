// dp::parallel over MPI ranks: N processes train the weights one process trains with the same
// replicas (to rounding), construction rejects ranks that hold different models, and the rank-
// sharded loader gives every rank its share of each global batch.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <doctest/doctest.h>
#include <mpi.h>

#include "world.hpp"

namespace nn = dp::nn;

namespace {

// No bias before batch_norm (it would receive a gradient that is zero up to rounding, which adamw
// normalises into full-size steps: noise, not a difference between configurations).
struct net {
  nn::linear<10, 16, float, false> fc1;
  nn::batch_norm<16> bn;
  nn::linear<16, 4> fc2;
  auto forward(auto x) const { return fc2(dp::relu(bn(fc1(x)))); }
};
struct plain_net {
  nn::linear<10, 16> fc1;
  nn::linear<16, 4> fc2;
  auto forward(auto x) const { return fc2(dp::tanh(fc1(x))); }
};
struct dropout_net {
  nn::linear<10, 16> fc1;
  nn::dropout drop{0.3f};
  nn::linear<16, 4> fc2;
  auto forward(auto x) const { return fc2(drop(dp::tanh(fc1(x)))); }
};

using dataset = dp::data::tensor_dataset<float, std::int64_t>;

dataset make_data(dp::index_t n) {
  dp::tensor<float> x = dp::randn<float>({n, 10}, dp::cpu(), 11);
  dp::tensor<std::int64_t> y = dp::cast<std::int64_t>(dp::rand<float>({n}, dp::cpu(), 12) * 3.99f);
  return {x, y};
}

std::vector<dp::device> workers(int n) {
  std::vector<dp::device> d;
  for (int i = 0; i < n; ++i) {
    d.push_back(dp::cpu(i));
  }
  return d;
}

/// Every parameter and buffer of a model, in declaration order, as doubles.
template <class M>
std::vector<double> state_of(const M& m) {
  std::vector<double> out;
  nn::for_each_tensor(m, [&](const std::string&, const auto& t) {
    for (auto v : t.value().contiguous().to_vector()) {
      out.push_back(static_cast<double>(v));
    }
  });
  return out;
}

/// max |a - b| / max(|b|, 1): a relative difference that does not blow up near zero.
double max_rel_diff(const std::vector<double>& a, const std::vector<double>& b) {
  REQUIRE(a.size() == b.size());
  double d = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    d = std::max(d, std::abs(a[i] - b[i]) / std::max(std::abs(b[i]), 1.0));
  }
  return d;
}

/// `steps` SGD steps of `ranked` on this rank's 12 samples of a global batch, and of `one` on the
/// whole batch in this process: then every parameter and buffer agrees within 1e-6 (relative).
template <class P, class One>
void train_shares(P& ranked, One& one, int steps) {
  const dp::index_t n = 12, r = test::world().rank();
  const dp::tensor<float> x = dp::randn<float>({n * test::world().size(), 10}, dp::cpu(), 31);
  const dp::tensor<std::int64_t> y =
      dp::cast<std::int64_t>(dp::rand<float>({n * test::world().size()}, dp::cpu(), 32) * 3.99f);
  auto ro = dp::optim::sgd(ranked, {.lr = 0.1});
  auto oo = dp::optim::sgd(one, {.lr = 0.1});
  for (int step = 0; step < steps; ++step) {
    (void)ranked.backward(nn::cross_entropy, x.slice(0, r * n, (r + 1) * n), y.slice(0, r * n, (r + 1) * n));
    ro.step();
    (void)one.backward(nn::cross_entropy, x, y);
    oo.step();
  }
  CHECK(max_rel_diff(state_of(ranked.model()), state_of(one.model())) < 1e-6);
}

/// Trains `steps` steps: `ranked` on this rank's shares, `reference` in this process alone on the
/// whole global batches (the same loader options), with the same optimizer kind.
template <class P, class R, class MakeOpt>
void train_both(P& ranked, R& reference, MakeOpt make_opt, int steps, dp::index_t batch) {
  const dataset data = make_data(93);  // 93 = 5 batches of 16 and one of 13: uneven shards too
  dp::data::loader shards{data, {.batch = batch, .shuffle = true, .seed = 5}, test::world()};
  dp::data::loader whole{data, {.batch = batch, .shuffle = true, .seed = 5}};
  auto opt_a = make_opt(ranked);
  auto opt_b = make_opt(reference);
  int done = 0;
  for (int epoch = 0; done < steps; ++epoch) {
    auto a = shards.epoch(epoch).begin();
    for (auto [x, y] : whole.epoch(epoch)) {
      if (done++ == steps) {
        break;
      }
      const auto& [xs, ys] = *a;
      const double la = ranked.backward(nn::cross_entropy, xs, ys);
      const double lb = reference.backward(nn::cross_entropy, x, y);
      CHECK(la == doctest::Approx(lb).epsilon(1e-5));  // the global loss on every rank
      opt_a.step();
      opt_b.step();
      ++a;
    }
  }
}

/// 20 steps of `Model` on `local` workers per rank against one process with `workers` workers,
/// from the same initial weights: every parameter and buffer within 1e-6 (relative).
template <class Model, class MakeOpt>
void check_equals_one_process(std::uint64_t seed, std::vector<dp::device> local, int workers_total, MakeOpt make_opt) {
  nn::manual_seed(seed);
  dp::parallel<Model> ranked{Model{}, test::world(), std::move(local)};
  nn::manual_seed(seed);
  dp::parallel<Model> one_process{Model{}, workers(workers_total)};
  train_both(ranked, one_process, make_opt, 20, 16);
  CHECK(max_rel_diff(state_of(ranked.model()), state_of(one_process.model())) < 1e-6);
}

auto sgd = [](auto& owner) { return dp::optim::sgd(owner, {.lr = 0.1, .momentum = 0.9}); };
auto adamw = [](auto& owner) { return dp::optim::adamw(owner, {.lr = 1e-2, .weight_decay = 1e-2}); };

}  // namespace

TEST_CASE("N ranks train the weights of one process with N workers: 20 sgd and 20 adamw steps, batch_norm") {
  const int n = test::world().size();
  check_equals_one_process<net>(1, workers(1), n, sgd);
  check_equals_one_process<net>(2, workers(1), n, adamw);
}

namespace {
/// 20 sgd steps of plain_net over the ranks and on one device: the same weights.
void check_plain_net_trains_one_device() {
  nn::manual_seed(3);
  dp::parallel<plain_net> ranked{plain_net{}, test::world()};
  nn::manual_seed(3);
  nn::trainer<plain_net> single{plain_net{}};
  train_both(ranked, single, [](auto& o) { return dp::optim::sgd(o, {.lr = 0.1, .momentum = 0.9}); }, 20, 16);
  CHECK(max_rel_diff(state_of(ranked.model()), state_of(single.model())) < 1e-6);
}
}  // namespace

TEST_CASE("without batch statistics, N ranks train the weights of one device") { check_plain_net_trains_one_device(); }

TEST_CASE("gradient buckets capped below a parameter's size split it, and N ranks still train one device's weights") {
  // MPI counts in int: a parameter past 2^31-1 elements is reduced in several buckets, each
  // announced once backward has written it. The cap is lowered to 5 elements here, so that every
  // weight matrix spans several buckets (plain_net's have 160 and 64 elements).
  const test::lowered<dp::index_t> cap(dp::dist::detail::max_bucket_elements, 5);
  check_plain_net_trains_one_device();
}

TEST_CASE("cross_entropy's ignore_index: N ranks train one device's weights, rank 0's share scoring nothing") {
  // Each rank sums its scored rows; the divisor is the global count, gathered with the batch sizes.
  const dp::index_t n = 12, r = test::world().rank(), all = n * test::world().size();
  nn::manual_seed(6);
  dp::parallel<plain_net> ranked{plain_net{}, test::world()};
  nn::manual_seed(6);
  nn::trainer<plain_net> single{plain_net{}};
  const auto x = dp::randn<float>({all, 10}, dp::cpu(), 41);
  dp::tensor<std::int64_t> y = dp::cast<std::int64_t>(dp::rand<float>({all}, dp::cpu(), 42) * 3.99f);
  for (dp::index_t i = 0; i < all; ++i) {
    if (i < n || i % 4 == 1) {
      y.data()[i] = nn::cross_entropy.ignore_index;
    }
  }
  auto ro = sgd(ranked);
  auto oo = sgd(single);
  for (int step = 0; step < 10; ++step) {
    const double la =
        ranked.backward(nn::cross_entropy, x.slice(0, r * n, (r + 1) * n), y.slice(0, r * n, (r + 1) * n));
    const double lb = single.backward(nn::cross_entropy, x, y);
    CHECK(la == doctest::Approx(lb).epsilon(1e-5));
    ro.step();
    oo.step();
  }
  CHECK(max_rel_diff(state_of(ranked.model()), state_of(single.model())) < 1e-6);
}

TEST_CASE("ranks x 2 workers equal one process with 2N workers") {
  const int n = test::world().size();
  check_equals_one_process<plain_net>(4, workers(2), 2 * n, adamw);
  // batch_norm normalises by each replica's share, so it matches where the shares do: 2 ranks x 2
  // workers split every batch of 16 (and the last of 13) like 4 workers.
  if (n == 2) {
    check_equals_one_process<net>(5, workers(2), 4, adamw);
  }
}

TEST_CASE("training-mode par(x) over ranks: each rank gets its rows of one process's output, with its statistics") {
  const int n = test::world().size();
  const dp::index_t r = test::world().rank();
  const auto x = dp::randn<float>({12 * n, 10}, dp::cpu(), 51);
  auto doubles = [](const dp::tensor<float>& t) {
    std::vector<double> v;
    for (float f : t.contiguous().to_vector()) {
      v.push_back(f);
    }
    return v;
  };
  // 12 rows on every rank: N workers of one process split the batch the same way.
  nn::manual_seed(7);
  dp::parallel<net> ranked{net{}, test::world()};
  nn::manual_seed(7);
  dp::parallel<net> one_process{net{}, workers(n)};
  const dp::tensor<float> mine = ranked(x.slice(0, r * 12, (r + 1) * 12));
  const dp::tensor<float> all = one_process(x);
  CHECK(max_rel_diff(doubles(mine), doubles(all.slice(0, r * 12, (r + 1) * 12))) < 1e-6);
  CHECK(max_rel_diff(state_of(ranked.model()), state_of(one_process.model())) < 1e-6);
  // Rows on rank 0 only (an epoch's last batch shorter than the ranks): the others compute no
  // statistics and take part in the buffer sync; every rank ends with one device's statistics.
  // (batch_norm refused their empty share, and rank 0 waited for them until the timeout.)
  nn::manual_seed(8);
  dp::parallel<net> short_batch{net{}, test::world()};
  nn::manual_seed(8);
  nn::trainer<net> single{net{}};
  const dp::tensor<float> part = short_batch(x.slice(0, 0, r == 0 ? 5 : 0));
  const dp::tensor<float> whole = single(x.slice(0, 0, 5));
  CHECK(part.shape() == dp::shape{r == 0 ? 5 : 0, 4});
  if (r == 0) {
    CHECK(max_rel_diff(doubles(part), doubles(whole)) < 1e-6);
  }
  CHECK(max_rel_diff(state_of(short_batch.model()), state_of(single.model())) < 1e-6);
}

TEST_CASE("all_to_all over MPI, and over ranks x 2 local replicas: block q is rank q's block for this rank") {
  const int n = test::world().size(), me = test::world().rank();
  auto blocks = [](int from, int size) {
    std::vector<float> v;
    for (int to = 0; to < size; ++to) {
      v.insert(v.end(), {100.0f * from + to, -100.0f * from - to, 0.5f});
    }
    // One row per destination: blocks are runs of elements whatever the shapes (a row-sliced
    // block once made MPI move rows' worth of elements per rank, past the buffers).
    return dp::from_vector(v).reshape({size, 3});
  };
  auto want = [](int to, int size) {
    std::vector<float> v;
    for (int from = 0; from < size; ++from) {
      v.insert(v.end(), {100.0f * from + to, -100.0f * from - to, 0.5f});
    }
    return v;
  };
  dp::dist::any_communicator mpi{test::world().make_communicator({})};
  dp::tensor<float> out = dp::zeros<float>({n, 3});
  mpi.all_to_all(blocks(me, n), out);
  CHECK(out.to_vector() == want(me, n));

  using hier = dp::dist::hierarchical_communicator<dp::dist::mpi_communicator>;
  auto locals = dp::dist::make_local_communicators(2);
  std::vector<std::vector<float>> got(2);
  std::vector<std::thread> threads;
  for (int i = 0; i < 2; ++i) {
    threads.emplace_back([&, i] {
      std::optional<dp::dist::mpi_communicator> global;
      if (i == 0) {
        global.emplace(test::world().make_communicator({}));
      }
      hier h{locals[static_cast<std::size_t>(i)], std::move(global), me, n};
      dp::tensor<float> o = dp::zeros<float>({2 * n, 3});
      h.all_to_all(blocks(h.rank(), h.size()), o);
      got[static_cast<std::size_t>(i)] = o.to_vector();
    });
  }
  for (auto& t : threads) {
    t.join();
  }
  CHECK(got[0] == want(2 * me, 2 * n));
  CHECK(got[1] == want(2 * me + 1, 2 * n));
}

TEST_CASE("construction gives every rank rank 0's parameters") {
  nn::manual_seed(100 + static_cast<std::uint64_t>(test::world().rank()));  // a different init per rank
  dp::parallel<plain_net> par{plain_net{}, test::world()};
  nn::manual_seed(100);
  const plain_net rank0;
  CHECK(state_of(par.model()) == state_of(rank0));
}

TEST_CASE("construction gives every rank rank 0's module settings: dropout's seed and p") {
  const int r = test::world().rank();
  nn::manual_seed(300 + static_cast<std::uint64_t>(r));  // dropout seeds come from the seed: one per rank
  dropout_net mine;
  mine.drop.p = 0.1f * static_cast<float>(r + 1);
  dp::parallel<dropout_net> par{mine, test::world()};
  nn::manual_seed(300);
  const dropout_net rank0;
  CHECK(par.model().drop.seed == rank0.drop.seed);
  CHECK(par.model().drop.p == 0.1f);
  // So a step's masks are those of one process: 3 steps of every rank's share give its weights.
  dropout_net reference = rank0;
  reference.drop.p = 0.1f;
  nn::trainer<dropout_net> one{reference};
  train_shares(par, one, 3);
}

TEST_CASE("edit: the module settings every rank ends with are rank 0's, on every local replica") {
  const int r = test::world().rank();
  nn::manual_seed(301);
  dp::parallel<dropout_net> par{dropout_net{}, test::world(), {dp::cpu(0), dp::cpu(1)}};
  par.edit([&](dropout_net& m) {
    m.drop.p = 0.2f * static_cast<float>(r + 1);
    m.drop.seed = 40 + static_cast<std::uint64_t>(r);
  });
  CHECK(par.model().drop.p == 0.2f);
  CHECK(par.model().drop.seed == 40);
  // And on the local replica 1 of every rank: 3 steps equal one process with rank 0's settings.
  dropout_net reference = par.model();
  nn::trainer<dropout_net> one{reference};
  train_shares(par, one, 3);
}

TEST_CASE("edit: rank 0's edited model becomes every rank's and every local replica's") {
  const int r = test::world().rank();
  nn::manual_seed(7);
  dp::parallel<plain_net> par{plain_net{}, test::world(), {dp::cpu(0), dp::cpu(1)}};
  // Each rank writes its own value: what every replica holds afterwards is rank 0's.
  par.edit([&](plain_net& m) { m.fc1.bias.assign(dp::full<float>({16}, static_cast<float>(r + 1))); });
  CHECK(par.model().fc1.bias.value().to_vector() == std::vector<float>(16, 1.f));
  std::vector<std::vector<float>> replicas(par.replica_count());
  dp::detail::replica_access::for_each_replica(
      par, [&](std::size_t i, const auto& w, const auto&) { replicas[i] = w.to_vector(); });
  CHECK(replicas[1] == replicas[0]);
}

TEST_CASE("edit: f that throws on one rank stops every rank, each holding rank 0's model") {
  const int r = test::world().rank();
  nn::manual_seed(8);
  dp::parallel<plain_net> par{plain_net{}, test::world()};
  const auto edit = [&] {
    par.edit([&](plain_net& m) {
      m.fc2.bias.assign(dp::full<float>({4}, 2.f));
      if (r == 1) {
        throw std::runtime_error("rank 1's edit failed");
      }
    });
  };
  if (r == 1) {
    CHECK_THROWS_WITH_AS(edit(), "rank 1's edit failed", std::runtime_error);
  } else {
    CHECK_THROWS_WITH_AS(edit(), doctest::Contains("edit(f) threw on 1 other rank(s)"), dp::runtime_error);
  }
  CHECK(par.model().fc2.bias.value().to_vector() == std::vector<float>(4, 2.f));
}

TEST_CASE("a load that gives the ranks different values is an error on every rank, which then hold rank 0's") {
  const int r = test::world().rank();
  nn::manual_seed(9);
  dp::parallel<plain_net> par{plain_net{}, test::world(), {dp::cpu(0), dp::cpu(1)}};
  // Each rank saves its own file, rank r's fc1 bias all r + 1, and loads it: a stale copy on one node.
  plain_net mine = par.model();
  mine.fc1.bias.assign(dp::full<float>({16}, static_cast<float>(r + 1)));
  const auto path_of = [](int rank) { return test::scratch_path("load_" + std::to_string(rank) + ".safetensors"); };
  dp::io::save(path_of(r), mine);
  const auto load = [&] { dp::io::load(path_of(r), par); };
  if (r == 0) {
    CHECK_THROWS_WITH_AS(load(), doctest::Contains("rank(s) differ from rank 0): each rank read its own file"),
                         dp::runtime_error);
  } else {
    CHECK_THROWS_WITH_AS(load(), doctest::Contains("differ from rank 0, this one in 'fc1.bias'"), dp::runtime_error);
  }
  // Every rank and local replica holds rank 0's file.
  CHECK(par.model().fc1.bias.value().to_vector() == std::vector<float>(16, 1.f));
  std::vector<std::vector<float>> replicas(par.replica_count());
  dp::detail::replica_access::for_each_replica(
      par, [&](std::size_t i, const auto& w, const auto&) { replicas[i] = w.to_vector(); });
  CHECK(replicas[1] == replicas[0]);
  // One file for every rank (rank 0's, written before the load above, which every rank reached) loads.
  CHECK_NOTHROW(dp::io::load(path_of(0), par));
  MPI_Barrier(MPI_COMM_WORLD);  // every rank has read rank 0's file before any removes its own
  std::filesystem::remove(path_of(r));
}

TEST_CASE("a checkpoint load whose ranks read different files is an error on every rank, before anything is written") {
  // Each rank saved its own checkpoint (a stale copy on one node: here another epoch, other weights
  // and another momentum). Before, every rank wrote its own file's optimizer state, and only then
  // were the models compared: every rank threw holding rank 0's model and its own momentum.
  const int r = test::world().rank();
  nn::manual_seed(12);
  dp::parallel<plain_net> par{plain_net{}, test::world(), {dp::cpu(0), dp::cpu(1)}};
  auto opt = dp::optim::sgd(par, {.lr = 0.1, .momentum = 0.9});
  const dp::index_t n = 8;
  const dp::tensor<float> x = dp::randn<float>({n * test::world().size(), 10}, dp::cpu(), 41);
  const dp::tensor<std::int64_t> y =
      dp::cast<std::int64_t>(dp::rand<float>({n * test::world().size()}, dp::cpu(), 42) * 3.99f);
  const auto step = [&] {
    (void)par.backward(nn::cross_entropy, x.slice(0, r * n, (r + 1) * n), y.slice(0, r * n, (r + 1) * n));
    opt.step();
  };
  step();
  const std::string path = test::scratch_path("differ_" + std::to_string(r) + ".ckpt");
  const auto momentum = [&] {
    std::vector<std::vector<float>> m;
    for (const auto& s : opt.state()) {
      m.push_back(s.value.to_vector());
    }
    return m;
  };
  // Rank r's file: the momentum after 1 + r steps, epoch 1 + r (rank 0 saves before its second step).
  for (int k = 0; k < test::world().size(); ++k) {
    if (k == r) {
      dp::io::save_checkpoint(path, par, opt, {.epoch = 1 + r});
    }
    step();
  }
  const std::vector<double> model_before = state_of(par.model());
  const auto momentum_before = momentum();
  CHECK_THROWS_WITH_AS((void)dp::io::load_checkpoint(path, par, opt),
                       doctest::Contains("load_checkpoint: the ranks read different files"), dp::runtime_error);
  CHECK(state_of(par.model()) == model_before);
  CHECK(momentum() == momentum_before);
  MPI_Barrier(MPI_COMM_WORLD);
  // The same file on every rank (rank 0's) loads: epoch 1 everywhere.
  CHECK(dp::io::load_checkpoint(test::scratch_path("differ_0.ckpt"), par, opt).epoch == 1);
  MPI_Barrier(MPI_COMM_WORLD);  // every rank has read rank 0's file before any removes its own
  std::filesystem::remove(path);
}

TEST_CASE("a load that fails on one rank before writing is an error on every rank, and no rank loads anything") {
  // Rank 1 cannot read its file: before, the other ranks wrote theirs and then waited for rank 1 in
  // the comparison of loaded values until the timeout.
  const int r = test::world().rank();
  nn::manual_seed(10);
  dp::parallel<plain_net> par{plain_net{}, test::world(), {dp::cpu(0), dp::cpu(1)}};
  auto opt = dp::optim::sgd(par, {.lr = 0.1, .momentum = 0.9});
  const std::vector<float> before = par.model().fc1.bias.value().to_vector();
  const std::string model_path = test::scratch_path("agree_" + std::to_string(r) + ".safetensors");
  const std::string checkpoint_path = test::scratch_path("agree_" + std::to_string(r) + ".ckpt");
  plain_net other = par.model();
  other.fc1.bias.assign(dp::full<float>({16}, 5.f));
  dp::io::save(model_path, other);
  par.edit([](plain_net& m) { m.fc1.bias.assign(dp::full<float>({16}, 5.f)); });
  dp::io::save_checkpoint(checkpoint_path, par, opt, {.epoch = 1});
  par.edit([&](plain_net& m) { m.fc1.bias.assign(dp::from_vector<float>(before)); });
  const std::string missing = test::scratch_path("agree_missing.safetensors");
  for (const bool checkpoint : {false, true}) {
    CAPTURE(checkpoint);
    const auto load = [&] {
      const std::string& path = r == 1 ? missing : (checkpoint ? checkpoint_path : model_path);
      if (checkpoint) {
        (void)dp::io::load_checkpoint(path, par, opt);
      } else {
        dp::io::load(path, par);
      }
    };
    if (r == 1) {
      CHECK_THROWS_AS(load(), dp::io_error);  // its own reason
    } else {
      CHECK_THROWS_WITH_AS(load(),
                           doctest::Contains("failed on 1 other rank(s) (their error says why); no rank loaded"),
                           dp::runtime_error);
    }
    CHECK(par.model().fc1.bias.value().to_vector() == before);
  }
  // Every rank reading a file that fits loads it.
  CHECK_NOTHROW(dp::io::load(model_path, par));
  CHECK(par.model().fc1.bias.value().to_vector() == std::vector<float>(16, 5.f));
  MPI_Barrier(MPI_COMM_WORLD);
  std::filesystem::remove(model_path);
  std::filesystem::remove(checkpoint_path);
}

namespace {
struct sized {
  nn::parameter<float> w;
  auto forward(auto x) const { return x * w; }
};
/// A module whose setting's name depends on a flag: ranks may disagree on which settings it has.
struct shifted {
  using value_type = float;
  nn::parameter<float> w{dp::ones<float>({2})};
  bool shifting = false;
  float shift = 0.5f;
  static void dp_members(auto& self, auto&& f) { f("w", self.w); }
  static void dp_settings(auto& self, auto&& f) {
    f("shifting", self.shifting);
    f(self.shifting ? "shift" : "offset", self.shift);
  }
  auto forward(auto x) const { return x * w + (shifting ? shift : 0.f); }
};
}  // namespace

TEST_CASE(
    "ranks in different step modes (train/eval, no_sync) are refused on every rank, before any other collective") {
  // Before, the rank in training mode synchronised its buffers (or reduced its gradients) and the
  // other did not: their next collectives did not line up.
  const int r = test::world().rank();
  nn::manual_seed(11);
  dp::parallel<plain_net> par{plain_net{}, test::world()};
  const auto x = dp::randn<float>({8, 10}, dp::cpu(), 3);
  const auto y = dp::zeros<float>({8, 4});
  const std::vector<float> before = par.model().fc1.weight.value().to_vector();
  if (r == 1) {
    par.eval();
  }
  CHECK_THROWS_WITH_AS(
      (void)par.backward(nn::mse_loss, x, y),
      doctest::Contains("rank 0 runs a step in training mode and rank 1 runs a step in evaluation "
                        "mode; every rank must make the same calls (backward or par(x)) in the same mode"),
      dp::value_error);
  par.train();
  const auto local = [&] {
    return r == 1 ? par.backward(nn::mse_loss, x, y, dp::no_sync) : par.backward(nn::mse_loss, x, y);
  };
  CHECK_THROWS_WITH_AS((void)local(), doctest::Contains("and rank 1 runs a step in training mode under no_sync"),
                       dp::value_error);
  const auto mixed = [&] {
    if (r == 1) {
      (void)par(x);  // a training-mode forward, whose batch exchange the others' steps met
    } else {
      (void)par.backward(nn::mse_loss, x, y);
    }
  };
  CHECK_THROWS_WITH_AS(mixed(),
                       doctest::Contains("rank 0 runs a step in training mode and rank 1 runs a training-mode forward"),
                       dp::value_error);
  CHECK(par.model().fc1.weight.value().to_vector() == before);
  // Alike again, the ranks train together.
  CHECK(std::isfinite(par.backward(nn::mse_loss, x, y)));
}

TEST_CASE("ranks that hold different models are rejected on every rank, naming the difference") {
  const int r = test::world().rank();
  sized m{nn::parameter<float>{dp::ones<float>({r == 1 ? 3 : 2})}};
  CHECK_THROWS_WITH_AS(dp::parallel<sized>(m, test::world()),
                       doctest::Contains("the ranks hold different models: rank 0 has 'parameter w float {2}' where "
                                         "rank 1 has 'parameter w float {3}'"),
                       dp::value_error);
  // Settings are named too: a rank with a setting the others lack is refused, not left waiting.
  shifted mine;
  mine.shifting = r == 1;
  CHECK_THROWS_WITH_AS(dp::parallel<shifted>(mine, test::world()),
                       doctest::Contains("rank 0 has 'setting offset' where rank 1 has 'setting shift'"),
                       dp::value_error);
}

TEST_CASE("ranks whose optimizers differ are rejected where the optimizers are made, naming the option") {
  // Each rank would update its replica with its own lr (read from its own config, say): the
  // replicas drift apart, and nothing compares them after construction.
  const int r = test::world().rank();
  dp::parallel<sized> par{sized{nn::parameter<float>{dp::ones<float>({2})}}, test::world()};
  CHECK_THROWS_WITH_AS(dp::optim::sgd(par, {.lr = r == 1 ? 0.2 : 0.1}),
                       doctest::Contains("the ranks' sgd options differ: rank 0 has 'lr 0.1' where rank 1 has 'lr "
                                         "0.2'; make every rank's optimizer with the same options"),
                       dp::value_error);
  CHECK_THROWS_WITH_AS(
      dp::optim::adamw(par, {.schedule = r == 1 ? dp::optim::cosine_lr(10) : dp::optim::cosine_lr(20)}),
      doctest::Contains("rank 0 has 'schedule.total_steps 20' where rank 1 has 'schedule.total_steps 10'"),
      dp::value_error);
  const auto either = [&] {
    if (r == 1) {
      (void)dp::optim::adam(par);
    } else {
      (void)dp::optim::adamw(par);
    }
  };
  CHECK_THROWS_WITH_AS(either(), doctest::Contains("rank 0 has 'optimizer adamw' where rank 1 has 'optimizer adam'"),
                       dp::value_error);
  // An option refused on one rank alone: that rank gives its reason, the others are refused with it
  // at once (they waited for it until the timeout).
  if (r == 1) {
    CHECK_THROWS_WITH_AS(dp::optim::sgd(par, {.lr = -0.1}), doctest::Contains("dp: sgd: lr is -0.1; expected a finite"),
                         dp::value_error);
  } else {
    CHECK_THROWS_WITH_AS(dp::optim::sgd(par, {.lr = 0.1}),
                         doctest::Contains("rank 0 has 'lr 0.1' where rank 1 has 'lr -0.1'"), dp::value_error);
  }
  CHECK_NOTHROW(dp::optim::sgd(par, {.lr = 0.1, .momentum = 0.9}));
}

TEST_CASE("ranks given different parallel_options are rejected on every rank, naming the option") {
  // Each would meet collectives the others do not line up with (bucket layouts, the deterministic
  // tree), or train apart (one undoing a step with a NaN loss that another keeps).
  const int r = test::world().rank();
  const auto m = [] { return sized{nn::parameter<float>{dp::ones<float>({2})}}; };
  CHECK_THROWS_WITH_AS(
      dp::parallel<sized>(m(), test::world(), dp::parallel_options{.bucket_bytes = r == 1 ? 8u << 20 : 25u << 20}),
      doctest::Contains("the ranks were given different parallel_options: rank 0 has "
                        "'bucket_bytes 26214400' where rank 1 has 'bucket_bytes 8388608'"),
      dp::value_error);
  CHECK_THROWS_WITH_AS(dp::parallel<sized>(m(), test::world(), dp::parallel_options{.deterministic = r != 1}),
                       doctest::Contains("rank 0 has 'deterministic true' where rank 1 has 'deterministic false'"),
                       dp::value_error);
  CHECK_THROWS_WITH_AS(
      dp::parallel<sized>(m(), test::world(), dp::parallel_options{.deterministic = true, .chunk = r == 1 ? 64 : 32}),
      doctest::Contains("rank 0 has 'chunk 32' where rank 1 has 'chunk 64'"), dp::value_error);
  CHECK_THROWS_WITH_AS(dp::parallel<sized>(m(), test::world(), dp::parallel_options{.allow_non_finite_loss = r == 1}),
                       doctest::Contains("'allow_non_finite_loss false' where rank 1 has 'allow_non_finite_loss true'"),
                       dp::value_error);
  // A chunk refused on one rank alone: that rank says why, and the others are refused with it at
  // once (they waited for it in the model check until the timeout).
  const auto t0 = std::chrono::steady_clock::now();
  CHECK_THROWS_WITH_AS(
      dp::parallel<sized>(m(), test::world(), dp::parallel_options{.deterministic = true, .chunk = r == 1 ? 0 : 32}),
      doctest::Contains(r == 1 ? "parallel_options::chunk must be positive, got 0"
                               : "rank 0 has 'chunk 32' where rank 1 has 'chunk 0'"),
      dp::value_error);
  CHECK_THROWS_WITH_AS(dp::parallel<sized>(m(), test::world(), dp::parallel_options{.chunk = r == 1 ? 0 : 32}),
                       doctest::Contains(r == 1 ? "parallel_options::chunk must be positive, got 0"
                                                : "rank 0 has 'chunk positive true' where rank 1 has 'chunk "
                                                  "positive false'"),
                       dp::value_error);
  CHECK(std::chrono::steady_clock::now() - t0 < test::world().options().timeout / 2);
  // Arguments one rank alone refuses before any collective (a device twice in its list, a timeout
  // of 0): that rank says why, and the others stop at once. They waited in the communicators'
  // creation for the timeout (10 s here, 5 minutes by default) and then blamed a missing rank.
  using namespace std::chrono_literals;
  const auto t1 = std::chrono::steady_clock::now();
  const std::vector<dp::device> twice{dp::cpu(0), dp::cpu(0)}, once{dp::cpu(0)};
  CHECK_THROWS_WITH_AS(dp::parallel<sized>(m(), test::world(), r == 1 ? twice : once, {.comm = {.timeout = 10s}}),
                       doctest::Contains(r == 1 ? "device cpu:0 appears twice in the device list"
                                                : "1 other rank(s) refused their arguments at construction"),
                       dp::error);
  CHECK_THROWS_WITH_AS(
      dp::parallel<sized>(m(), test::world(), once, {.comm = {.timeout = r == 1 ? 0ms : 10000ms}}),
      doctest::Contains(r == 1 ? "parallel_options::comm" : "1 other rank(s) refused their arguments at construction"),
      dp::error);
  CHECK(std::chrono::steady_clock::now() - t1 < 5s);
  // Alike, they train together (the chunk is the deterministic mode's only).
  dp::parallel<sized> par{m(), test::world(), dp::parallel_options{.chunk = r == 1 ? 64 : 32}};
  CHECK(par.replica_count() == 1);
}

namespace {
/// Refuses a 2-row input in evaluation mode: a failure of every local replica, replica 0 included.
struct eval_picky {
  nn::linear<10, 4> fc;
  auto forward(auto x) const {
    if (!nn::training() && x.shape()[0] == 2) {
      throw dp::value_error("eval_picky: an evaluation input of 2 rows");
    }
    return fc(x);
  }
};
}  // namespace

TEST_CASE("an evaluation forward that fails on ranks x 2 workers aborts no communicator: the next step trains") {
  // Replica 0's failure aborted its communicator to the other ranks, which then ended the job, though
  // an evaluation forward waits for no one (replica 1's failure was recovered).
  nn::manual_seed(8);
  dp::parallel<eval_picky> par{eval_picky{}, test::world(), {dp::cpu(0), dp::cpu(1)}};
  const auto x = dp::randn<float>({4, 10}, dp::cpu(), 9), y = dp::randn<float>({4, 4}, dp::cpu(), 10);
  par.eval();
  CHECK_THROWS_WITH_AS((void)par(x), doctest::Contains("an evaluation input of 2 rows"), dp::value_error);
  par.train();
  CHECK(std::isfinite(par.backward(nn::mse_loss, x, y)));
}

TEST_CASE("a rank-sharded loader gives each rank its part of every global batch; the union is the batch") {
  const int rank = test::world().rank(), n = test::world().size();
  const dp::index_t samples = 50;
  dp::tensor<std::int64_t> ids = dp::arange<std::int64_t>(0, samples);
  const dataset data{dp::zeros<float>({samples, 2}), ids};
  for (const bool shuffle : {true, false}) {
    CAPTURE(shuffle);
    dp::data::loader shards{data, {.batch = 7, .shuffle = shuffle, .seed = 9}, test::world()};
    dp::data::loader whole{data, {.batch = 7, .shuffle = shuffle, .seed = 9}};
    REQUIRE(shards.batches() == whole.batches());
    std::vector<std::int64_t> seen;
    auto a = shards.epoch(3).begin();
    for (auto [x, y] : whole.epoch(3)) {
      const auto mine = (*a).y.to_vector();
      // Gather every rank's part of this batch (rank order) and compare with the whole batch.
      int count = static_cast<int>(mine.size());
      std::vector<int> counts(static_cast<std::size_t>(n)), displs(static_cast<std::size_t>(n));
      MPI_Allgather(&count, 1, MPI_INT, counts.data(), 1, MPI_INT, MPI_COMM_WORLD);
      for (int i = 1; i < n; ++i) {
        displs[static_cast<std::size_t>(i)] =
            displs[static_cast<std::size_t>(i - 1)] + counts[static_cast<std::size_t>(i - 1)];
      }
      std::vector<std::int64_t> all(static_cast<std::size_t>(displs.back() + counts.back()));
      MPI_Allgatherv(mine.data(), count, MPI_INT64_T, all.data(), counts.data(), displs.data(), MPI_INT64_T,
                     MPI_COMM_WORLD);
      CHECK(all == y.to_vector());
      CHECK(std::abs(count - static_cast<int>(y.numel()) / n) <= 1);  // shares differ by at most one
      seen.insert(seen.end(), all.begin(), all.end());
      ++a;
    }
    std::sort(seen.begin(), seen.end());
    CHECK(seen == ids.to_vector());  // every sample once: none duplicated, none dropped
    (void)rank;
  }
}

TEST_CASE("ranks whose loaders would give different batches are refused at construction, on every rank") {
  const int rank = test::world().rank();
  const dp::index_t samples = rank == 1 ? 49 : 50;  // rank 1 loaded one sample less
  const dataset data{dp::zeros<float>({samples, 2}), dp::arange<std::int64_t>(0, samples)};
  CHECK_THROWS_WITH_AS((dp::data::loader{data, {.batch = 7}, test::world()}),
                       doctest::Contains("loader: the ranks disagree: rank 0 has dataset size 50 where rank 1 has 49"),
                       dp::value_error);
  const dataset same{dp::zeros<float>({50, 2}), dp::arange<std::int64_t>(0, 50)};
  CHECK_THROWS_WITH_AS((dp::data::loader{same, {.batch = 7, .seed = static_cast<std::uint64_t>(rank)}, test::world()}),
                       doctest::Contains("rank 0 has seed 0 where rank 1 has 1"), dp::value_error);
  CHECK_NOTHROW((dp::data::loader{same, {.batch = 7, .seed = 3}, test::world()}));
  // The same size, other samples (each rank read its own pre-split file): sharding it would train
  // on parts of different datasets, silently.
  const dataset own{dp::full<float>({50, 2}, static_cast<float>(rank)), dp::arange<std::int64_t>(0, 50)};
  CHECK_THROWS_WITH_AS((dp::data::loader{own, {.batch = 7}, test::world()}),
                       doctest::Contains("loader: the ranks disagree: rank 0 has dataset fingerprint() (a checksum of "
                                         "its samples)"),
                       dp::value_error);
  // An option refused on one rank alone: that rank gives its reason, the others are refused with it
  // (they waited for it until the timeout).
  const auto one_bad = [&] {
    return dp::data::loader{same, {.batch = 7, .prefetch = rank == 1 ? 100 : 2}, test::world()};
  };
  if (rank == 1) {
    CHECK_THROWS_WITH_AS(one_bad(), doctest::Contains("prefetch must lie in [0, 64], got 100"), dp::value_error);
  } else {
    CHECK_THROWS_WITH_AS(
        one_bad(),
        doctest::Contains("rank 0 has options in range (1: yes, 0: no; its own error says which) 1 where rank 1 has 0"),
        dp::value_error);
  }
}

namespace {
/// Every parameter and buffer's bytes after 20 adamw steps on the global batches of a loader
/// (by default 92 samples in batches of 40, 40 and 12, chunks of 6 whose last in a batch of 40 is 4
/// samples, so shares of whole chunks are uneven), and the last loss.
template <class P>
std::vector<unsigned char> deterministic_run(P& par, bool ranked, dp::index_t samples = 92, dp::index_t batch = 40) {
  const dataset data = make_data(samples);
  dp::data::loader loader =
      ranked ? dp::data::loader{data, {.batch = batch, .shuffle = true, .seed = 5, .align = 6}, test::world()}
             : dp::data::loader{data, {.batch = batch, .shuffle = true, .seed = 5}};
  auto opt = adamw(par);
  double loss = 0;
  int done = 0;
  for (int epoch = 0; done < 20; ++epoch) {
    for (auto [x, y] : loader.epoch(epoch)) {
      if (done++ == 20) {
        break;
      }
      loss = par.backward(nn::cross_entropy, x, y);
      opt.step();
    }
  }
  std::vector<unsigned char> bytes;
  nn::for_each_tensor(par.model(), [&](const std::string&, const auto& t) {
    const auto v = t.value().contiguous().to_vector();
    const auto* p = reinterpret_cast<const unsigned char*>(v.data());
    bytes.insert(bytes.end(), p, p + v.size() * sizeof(v[0]));
  });
  const auto* l = reinterpret_cast<const unsigned char*>(&loss);
  bytes.insert(bytes.end(), l, l + sizeof(loss));
  return bytes;
}
}  // namespace

TEST_CASE("deterministic: N ranks, and N ranks x 2 workers, give the bits of one worker in one process") {
  const dp::parallel_options det{.deterministic = true, .chunk = 6};
  nn::manual_seed(21);
  dp::parallel<net> one{net{}, {dp::cpu(0)}, det};
  const auto want = deterministic_run(one, false);
  for (int local : {1, 2}) {
    CAPTURE(local);
    nn::manual_seed(21);
    dp::parallel<net> ranked{net{}, test::world(), workers(local), det};
    const auto got = deterministic_run(ranked, true);
    CHECK(got.size() == want.size());
    CHECK(std::memcmp(got.data(), want.data(), std::min(got.size(), want.size())) == 0);
  }
}

TEST_CASE("deterministic: ranks left without samples by a short batch take part, with the same bits") {
  // 41 samples in batches of 9 and a last of 5, chunks of 6: shares of 6 and 3, then 5, and every
  // later rank's share is empty (it starts where the batch ends, not on a chunk's edge).
  const dp::parallel_options det{.deterministic = true, .chunk = 6};
  nn::manual_seed(22);
  dp::parallel<net> one{net{}, {dp::cpu(0)}, det};
  const auto want = deterministic_run(one, false, 41, 9);
  nn::manual_seed(22);
  dp::parallel<net> ranked{net{}, test::world(), det};
  const auto got = deterministic_run(ranked, true, 41, 9);
  CHECK(got.size() == want.size());
  CHECK(std::memcmp(got.data(), want.data(), std::min(got.size(), want.size())) == 0);
}

TEST_CASE("deterministic: a rank whose share is not whole chunks is told to align its loader") {
  nn::manual_seed(1);
  dp::parallel<net> par{net{}, test::world(), {.deterministic = true, .chunk = 6}};
  const dataset data = make_data(40);
  dp::data::loader loader{data, {.batch = 40}, test::world()};  // shares of 20 and 20 (or 14, 13, 13): not chunks of 6
  auto [x, y] = *loader.epoch(0).begin();
  CHECK_THROWS_WITH_AS((void)par.backward(nn::cross_entropy, x, y),
                       doctest::Contains("make the loader with {.align = 6}"), dp::value_error);
}
