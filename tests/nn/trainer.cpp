#include <atomic>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <new>
#include <utility>
#include <vector>

#include <doctest/doctest.h>

#include <dp/dp.hpp>

namespace nn = dp::nn;

// A counting global allocator for this test binary: every operator new is counted.
namespace {
std::atomic<long> heap_allocations{0};
}
void* operator new(std::size_t n) {
  heap_allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n ? n : 1)) {
    return p;
  }
  throw std::bad_alloc();
}
void* operator new[](std::size_t n) { return operator new(n); }
void* operator new(std::size_t n, std::align_val_t a) {
  heap_allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::aligned_alloc(
          static_cast<std::size_t>(a),
          (n + static_cast<std::size_t>(a) - 1) / static_cast<std::size_t>(a) * static_cast<std::size_t>(a))) {
    return p;
  }
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }

namespace {
struct classifier {
  nn::linear<64, 128> fc1;
  nn::batch_norm<128> bn;
  nn::linear<128, 10> fc2;
  nn::dropout drop{0.1f};
  nn::parameter<float> scale{dp::ones<float>({10})};
  auto forward(auto x) const { return fc2(drop(dp::relu(bn(fc1(x))))) * scale; }
};
struct settled {
  nn::linear<5, 8> a;
  nn::dropout drop{0.5f};
  nn::layer_norm<8> ln;
  nn::linear<8, 3> b;
  auto forward(auto x) const { return b(ln(drop(dp::tanh(a(x))))); }
};
struct replay_model {
  nn::linear<5, 4> a;
  nn::layer_norm<4> ln;
  nn::linear<4, 3> b;
  auto forward(auto x) const { return b(dp::gelu(ln(a(x)))); }
};
}  // namespace

TEST_CASE("a steady-state training step allocates nothing (heap or pool) after the first") {
  nn::trainer<classifier> t{classifier{}};
  auto opt = dp::optim::adamw(t, {.lr = 1e-3});
  auto x = dp::randn<float>({32, 64}, dp::cpu(), 1);
  auto y = dp::from_vector<std::int64_t>(std::vector<std::int64_t>(32, 3));
  for (int i = 0; i < 3; ++i) {  // trace, then warm the pools
    (void)t.backward(nn::cross_entropy, x, y);
    opt.step();
  }
  const long heap_before = heap_allocations.load();
  const auto before = dp::counters();
  for (int i = 0; i < 20; ++i) {
    (void)t.backward(nn::cross_entropy, x, y);
    opt.step();
  }
  const long heap = heap_allocations.load() - heap_before;
  const auto after = dp::counters();
  CHECK(heap == 0);
  CHECK(after.allocations - before.allocations == 0);
  CHECK(t.plan_count() == 1);
}

TEST_CASE("backward_async leaves the loss on the device: same loss and gradients, no read-back") {
  nn::manual_seed(5);
  replay_model model;
  nn::trainer<replay_model> sync{model}, async{model};
  auto x1 = dp::randn<float>({6, 5}, dp::cpu(), 1), x2 = dp::randn<float>({6, 5}, dp::cpu(), 2);
  auto y = dp::from_vector<std::int64_t>({0, 1, 2, 0, 1, 2});
  const double l1 = sync.backward(nn::cross_entropy, x1, y);
  const dp::tensor<float> loss = async.backward_async(nn::cross_entropy, x1, y);
  CHECK(loss.numel() == 1);
  CHECK(loss.device() == async.device());
  CHECK(loss.item() == static_cast<float>(l1));
  CHECK(dp::detail::trainer_access::flat_grads(async).to_vector() ==
        dp::detail::trainer_access::flat_grads(sync).to_vector());
  // The returned tensor is the plan's loss slot: the next step of that shape writes into it.
  const double l2 = sync.backward(nn::cross_entropy, x2, y);
  const long heap_before = heap_allocations.load();
  (void)async.backward_async(nn::cross_entropy, x2, y);
  CHECK(heap_allocations.load() - heap_before == 0);
  CHECK(loss.item() == static_cast<float>(l2));
  CHECK(l1 != l2);
  // A trailing no_sync works as with backward.
  (void)async.backward_async(nn::cross_entropy, x1, y, dp::no_sync);
  CHECK(async.gradients() == nn::grad_state::local);
}

TEST_CASE("each input shape and each mode gets its own plan") {
  nn::trainer<classifier> t{classifier{}};
  auto y8 = dp::zeros<std::int64_t>({8}), y4 = dp::zeros<std::int64_t>({4});
  (void)t.backward(nn::cross_entropy, dp::randn<float>({8, 64}), y8);
  (void)t.backward(nn::cross_entropy, dp::randn<float>({8, 64}), y8);
  CHECK(t.plan_count() == 1);
  (void)t.backward(nn::cross_entropy, dp::randn<float>({4, 64}), y4);
  CHECK(t.plan_count() == 2);
  t.eval();
  (void)t.backward(nn::cross_entropy, dp::randn<float>({4, 64}), y4);
  CHECK(t.plan_count() == 3);
}

TEST_CASE("replaying a plan on new data gives the gradients of a fresh trace") {
  nn::manual_seed(3);
  replay_model model;
  nn::trainer<replay_model> replayed{model};
  nn::trainer<replay_model> fresh{model};
  auto x1 = dp::randn<float>({6, 5}, dp::cpu(), 1), x2 = dp::randn<float>({6, 5}, dp::cpu(), 2);
  auto y = dp::from_vector<std::int64_t>({0, 1, 2, 0, 1, 2});
  (void)replayed.backward(nn::cross_entropy, x1, y);
  const float l2 = replayed.backward(nn::cross_entropy, x2, y);  // replay
  const float f2 = fresh.backward(nn::cross_entropy, x2, y);     // trace
  CHECK(l2 == f2);
  CHECK(dp::detail::trainer_access::flat_grads(replayed).to_vector() ==
        dp::detail::trainer_access::flat_grads(fresh).to_vector());
}

TEST_CASE("no_sync accumulates; the next plain backward adds to it") {
  nn::manual_seed(4);
  nn::linear<3, 2> model;
  nn::trainer<nn::linear<3, 2>> acc{model}, a{model}, b{model};
  auto x1 = dp::randn<float>({4, 3}, dp::cpu(), 1), x2 = dp::randn<float>({4, 3}, dp::cpu(), 2);
  auto y = dp::randn<float>({4, 2}, dp::cpu(), 3);
  (void)acc.backward(nn::mse_loss, x1, y, dp::no_sync);
  CHECK(acc.gradients() == nn::grad_state::local);
  (void)acc.backward(nn::mse_loss, x2, y);
  CHECK(acc.gradients() == nn::grad_state::complete);
  (void)a.backward(nn::mse_loss, x1, y);
  (void)b.backward(nn::mse_loss, x2, y);
  const auto ga = dp::detail::trainer_access::flat_grads(a).to_vector(),
             gb = dp::detail::trainer_access::flat_grads(b).to_vector(),
             gacc = dp::detail::trainer_access::flat_grads(acc).to_vector();
  for (std::size_t i = 0; i < ga.size(); ++i) {
    CHECK(gacc[i] == doctest::Approx(ga[i] + gb[i]).epsilon(1e-6));
  }
}

TEST_CASE("an optimizer refuses to step without gradients, or after only a no_sync backward") {
  nn::trainer<nn::linear<3, 2>> t{nn::linear<3, 2>{}};
  auto opt = dp::optim::sgd(t, {.lr = 0.1});
  CHECK_THROWS_WITH_AS(opt.step(), doctest::Contains("without a backward"), dp::runtime_error);
  auto x = dp::randn<float>({4, 3}), y = dp::randn<float>({4, 2});
  (void)t.backward(nn::mse_loss, x, y, dp::no_sync);
  CHECK_THROWS_WITH_AS(opt.step(), doctest::Contains("no_sync"), dp::runtime_error);
  (void)t.backward(nn::mse_loss, x, y);
  opt.step();
  CHECK_THROWS_AS(opt.step(), dp::runtime_error);  // the gradients were used
}

TEST_CASE("an optimizer made from a trainer that was then wrapped refuses its first step") {
  using mlp = nn::sequential<nn::linear<3, 4>, nn::relu, nn::linear<4, 2>>;
  nn::trainer<mlp> t{mlp{}};
  auto stale = dp::optim::sgd(t, {.lr = 0.1});
  auto x = dp::randn<float>({6, 3}), y = dp::randn<float>({6, 2});
  (void)t.backward(nn::mse_loss, x, y);  // gradients are ready on t...
  const auto before = t.model().get<0>().weight.value().to_vector();
  dp::parallel<mlp> par{std::move(t), {dp::cpu(0), dp::cpu(1)}};  // ...but t's model now trains in par
  // A retired trainer is still a valid object (what the stale optimizer points at): reading it is the test.
  CHECK(t.retired());  // NOLINT(bugprone-use-after-move)
  CHECK_THROWS_WITH_AS(stale.step(), doctest::Contains("moved into a dp::parallel"), dp::runtime_error);
  CHECK(t.model().get<0>().weight.value().to_vector() == before);    // NOLINT(bugprone-use-after-move): nothing stepped
  CHECK(par.model().get<0>().weight.value().to_vector() == before);  // par starts from t's model
  auto opt = dp::optim::sgd(par, {.lr = 0.1});
  (void)par.backward(nn::mse_loss, x, y);
  opt.step();
  // Neither trains it again: its backward, or a second parallel from it (which would copy the model
  // as it was when par took it, not par's).
  CHECK_THROWS_WITH_AS((void)t.backward(nn::mse_loss, x, y),  // NOLINT(bugprone-use-after-move): t is retired
                       doctest::Contains("call par.backward(...)"), dp::runtime_error);
  CHECK_THROWS_WITH_AS((dp::parallel<mlp>{std::move(t), {dp::cpu(0)}}),  // NOLINT(bugprone-use-after-move)
                       doctest::Contains("the trainer was already moved into a dp::parallel"), dp::runtime_error);
}

TEST_CASE("an empty batch is the same error for every device count, and nothing steps") {
  using mlp = nn::sequential<nn::linear<3, 2>>;
  auto x = dp::zeros<float>({0, 3});
  dp::tensor<std::int64_t> y = dp::zeros<std::int64_t>({0});
  for (int n : {1, 3}) {
    CAPTURE(n);
    std::vector<dp::device> devs;
    for (int i = 0; i < n; ++i) {
      devs.push_back(dp::cpu(i));
    }
    nn::manual_seed(2);
    dp::parallel<mlp> par{mlp{}, devs};
    auto opt = dp::optim::sgd(par, {.lr = 0.1});
    const auto before = par.model().get<0>().weight.value().to_vector();
    CHECK_THROWS_WITH_AS((void)par.backward(nn::cross_entropy, x, y),
                         doctest::Contains("dp: backward got an empty batch (the target has shape {0})"),
                         dp::value_error);
    CHECK_THROWS_WITH_AS(opt.step(), doctest::Contains("without a backward"), dp::runtime_error);
    CHECK(par.model().get<0>().weight.value().to_vector() == before);
    dp::tensor<float> out = par(x);  // forward of an empty batch: an empty result, on any device count
    CHECK(out.shape() == dp::shape{0, 2});
  }
  nn::trainer<mlp> t{mlp{}};
  CHECK_THROWS_WITH_AS((void)t.backward(nn::cross_entropy, x, y), doctest::Contains("empty batch"), dp::value_error);
}

namespace {
// A custom layer with state it updates in forward: a call counter and a running mean of the input,
// both changed through nn::update, the declared buffer-update API.
struct counting {
  nn::linear<3, 2> fc;
  nn::buffer<float> calls{dp::zeros<float>({})};
  nn::buffer<float> input_mean{dp::zeros<float>({3})};
  auto forward(auto x) const {
    nn::update(calls, calls + 1.f);
    nn::update(input_mean, 0.5f * input_mean + 0.5f * dp::mean(nn::detach(x), 0));
    return fc(x);
  }
};
// The same state changed the wrong way: a copied tensor handle written in forward.
struct writes_through_handle {
  nn::linear<3, 2> fc;
  nn::buffer<float> calls{dp::zeros<float>({})};
  auto forward(auto x) const {
    dp::tensor<float> handle = calls.value();
    handle += 1.f;
    return fc(x);
  }
};
// State kept outside the model altogether, written in forward: the same pitfall by another door.
struct writes_static {
  nn::linear<3, 2> fc;
  static inline dp::tensor<float> calls = dp::zeros<float>({});
  auto forward(auto x) const {
    calls += 1.f;
    return fc(x);
  }
};
// A buffer kept outside the model, changed with nn::update: not the model's state either.
struct updates_static {
  nn::linear<3, 2> fc;
  static inline nn::buffer<float> calls{dp::zeros<float>({})};
  auto forward(auto x) const {
    nn::update(calls, calls + 1.f);
    return fc(x);
  }
};
}  // namespace

namespace {
// An integer buffer updated from a float its type does not hold: checked as an assignment is (the
// conversion of a float past int64's range was undefined).
struct float_into_count {
  nn::linear<3, 2> fc;
  nn::buffer<std::int64_t> count{dp::zeros<std::int64_t>({})};
  auto forward(auto x) const {
    nn::update(count, dp::sum(nn::detach(x)) * 1e30f);
    return fc(x);
  }
};
}  // namespace

TEST_CASE("nn::update of an integer buffer refuses a float its type does not hold, as an assignment does") {
  auto x = dp::from_vector<float>({1, 2, 3, 3, 4, 5}, {2, 3});
  auto y = dp::zeros<float>({2, 2});
  nn::trainer<float_into_count> b{float_into_count{}};
  CHECK_THROWS_WITH_AS((void)b.backward(nn::mse_loss, x, y),
                       doctest::Contains("cast to an integer type of a value that is NaN, infinite or outside"),
                       dp::value_error);
  CHECK(b.model().count.value().item() == 0);
}

TEST_CASE("nn::update changes a buffer on every step and every call, traced or not") {
  nn::trainer<counting> t{counting{}};
  auto x = dp::from_vector<float>({1, 2, 3, 3, 4, 5}, {2, 3});
  auto y = dp::zeros<float>({2, 2});
  for (int i = 0; i < 5; ++i) {
    (void)t.backward(nn::mse_loss, x, y);  // step 1 traces, steps 2-5 replay
  }
  CHECK(t.plan_count() == 1);
  CHECK(t.model().calls.value().item() == 5.f);
  // Five halvings towards the column means {2, 3, 4}: 1 - 2^-5 of the way there.
  const auto m = t.model().input_mean.value().to_vector();
  CHECK(m[0] == doctest::Approx(2.0 * (1 - 1.0 / 32)));
  CHECK(m[2] == doctest::Approx(4.0 * (1 - 1.0 / 32)));
  t.eval();
  for (int i = 0; i < 3; ++i) {
    (void)t(x);  // untraced calls update at once
  }
  CHECK(t.model().calls.value().item() == 8.f);
}

TEST_CASE("buffers changed by nn::update are synchronised across replicas by their policy") {
  dp::parallel<counting> par{counting{}, {dp::cpu(0), dp::cpu(1), dp::cpu(2)}};
  nn::trainer<counting> single{counting{}};
  auto x = dp::randn<float>({7, 3}, dp::cpu(), 3);
  auto y = dp::zeros<float>({7, 2});
  for (int i = 0; i < 4; ++i) {
    (void)par.backward(nn::mse_loss, x, y);
    (void)single.backward(nn::mse_loss, x, y);
  }
  // Every replica counted every step; the mean policy weights replicas by their share of the batch.
  CHECK(par.model().calls.value().item() == doctest::Approx(4.0));
  CHECK(single.model().calls.value().item() == 4.f);
  // Each replica saw its own shard's mean; the share-weighted mean over replicas is the batch mean, so
  // the synchronised running mean equals the single-device one (replica 0's alone would not).
  const auto a = par.model().input_mean.value().to_vector(), b = single.model().input_mean.value().to_vector();
  const auto shard0 = dp::mean(x.slice(0, 0, 3), 0).to_vector(), whole = dp::mean(x, 0).to_vector();
  for (int i = 0; i < 3; ++i) {
    CHECK(a[i] == doctest::Approx(b[i]).epsilon(1e-5));
    CHECK(std::abs(shard0[i] - whole[i]) > 1e-3);  // the check above could fail
  }
}

TEST_CASE("a failed step in evaluation mode puts back the buffers its forward updated") {
  nn::trainer<counting> t{counting{}};
  t.eval();  // nn::update runs in either mode, so a failed step must undo it in either
  const auto y = dp::zeros<float>({2, 2});
  (void)t.backward(nn::mse_loss, dp::from_vector<float>({1, 2, 3, 3, 4, 5}, {2, 3}), y);
  // One halving towards the column means {2, 3, 4}.
  const std::vector<float> mean_after_one{1.f, 1.5f, 2.f};
  CHECK(t.model().input_mean.value().to_vector() == mean_after_one);
  const auto poisoned = dp::from_vector<float>({1, 2, 3, 3, 4, std::numeric_limits<float>::quiet_NaN()}, {2, 3});
  CHECK_THROWS_WITH_AS((void)t.backward(nn::mse_loss, poisoned, y), doctest::Contains("the loss of step 2 is NaN"),
                       dp::value_error);
  CHECK(t.model().calls.value().item() == 1.f);
  CHECK(t.model().input_mean.value().to_vector() == mean_after_one);  // not NaN in its last column
  CHECK(t.steps() == 1);
}

namespace {
// batch_norm updates its statistics, then fc refuses the 4 features it is given: a forward that fails
// part-way.
struct norm_then_wrong_width {
  nn::batch_norm<4> bn;
  nn::linear<3, 2> fc;
  auto forward(auto x) const { return fc(bn(x)); }
};
template <class Owner>
void check_buffers_untouched(const Owner& o) {
  CHECK(o.model().bn.running_mean.value().to_vector() == std::vector<float>(4, 0.f));  // not 0.1 * the means
  CHECK(o.model().bn.running_var.value().to_vector() == std::vector<float>(4, 1.f));
  CHECK(o.model().bn.num_batches_tracked.value().item() == 0);
}
}  // namespace

TEST_CASE("a training-mode forward that fails part-way leaves the buffers as they were") {
  std::vector<float> rows;
  for (int i = 0; i < 32; ++i) {
    rows.push_back(static_cast<float>(i));  // column j's mean is 14 + j: batch_norm would move running_mean
  }
  const auto x = dp::from_vector<float>(rows, {8, 4});
  nn::trainer<norm_then_wrong_width> t{norm_then_wrong_width{}};
  for (int call = 0; call < 2; ++call) {  // the second call writes over the copy the first made
    CHECK_THROWS_WITH_AS((void)t(x), doctest::Contains("dp: linear<3, 2>"), dp::shape_error);
    check_buffers_untouched(t);
  }
  const std::vector<std::vector<dp::device>> counts{{dp::cpu(0)}, {dp::cpu(0), dp::cpu(1)}};
  for (const auto& devices : counts) {
    CAPTURE(devices.size());
    dp::parallel<norm_then_wrong_width> par{norm_then_wrong_width{}, devices};
    CHECK_THROWS_WITH_AS((void)par(x), doctest::Contains("dp: linear<3, 2>"), dp::shape_error);
    check_buffers_untouched(par);
  }
}

TEST_CASE("dp::parallel refuses nn::update in evaluation mode, where it would not synchronise buffers") {
  // In evaluation mode each replica (and rank) would update its own copy from its share of the
  // batch, and no synchronisation follows: the copies would drift apart. The bare trainer, which has
  // one copy, updates (above); dp::parallel refuses on any device count and in either of its modes.
  const std::vector<std::vector<dp::device>> counts{{dp::cpu(0)}, {dp::cpu(0), dp::cpu(1)}};
  for (const auto& devices : counts) {
    for (const bool deterministic : {false, true}) {
      CAPTURE(devices.size());
      CAPTURE(deterministic);
      dp::parallel<counting> par{counting{}, devices, {.deterministic = deterministic, .chunk = 2}};
      const auto x = dp::from_vector<float>({1, 2, 3, 3, 4, 5, 5, 6, 7, 7, 8, 9}, {4, 3});
      const auto y = dp::zeros<float>({4, 2});
      (void)par.backward(nn::mse_loss, x, y);  // training mode: updated and synchronised
      const auto mean = par.model().input_mean.value().to_vector();
      CHECK(mean == std::vector<float>{2.f, 2.5f, 3.f});  // halfway to the column means {4, 5, 6}
      par.eval();
      const auto refused = doctest::Contains(
          "nn::update of a buffer of shape {} in evaluation mode, in a model "
          "that dp::parallel trains");
      CHECK_THROWS_WITH_AS((void)par.backward(nn::mse_loss, x, y), refused, dp::value_error);
      CHECK_THROWS_WITH_AS((void)par(x), refused, dp::value_error);
      CHECK(par.model().calls.value().item() == 1.f);
      CHECK(par.model().input_mean.value().to_vector() == mean);
      CHECK(par.steps() == 1);
      par.train();
      (void)par.backward(nn::mse_loss, x, y);
      CHECK(par.model().calls.value().item() == 2.f);
    }
  }
}

TEST_CASE("writing a buffer or a static tensor from forward through a handle is refused, traced or not") {
  nn::trainer<writes_through_handle> t{writes_through_handle{}};
  auto x = dp::randn<float>({2, 3}), y = dp::zeros<float>({2, 2});
  CHECK_THROWS_WITH_AS((void)t.backward(nn::mse_loss, x, y), doctest::Contains("nn::update(buffer, new_value)"),
                       dp::value_error);
  CHECK_THROWS_WITH_AS((void)t(x), doctest::Contains("wrote into a tensor that existed before it started"),
                       dp::value_error);
  CHECK(t.model().calls.value().item() == 0.f);
  // A static member: not the model's storage, but older than forward, so refused too.
  nn::trainer<writes_static> s{writes_static{}};
  CHECK_THROWS_WITH_AS((void)s.backward(nn::mse_loss, x, y), doctest::Contains("such as a static member"),
                       dp::value_error);
  CHECK(writes_static::calls.item() == 0.f);
  // nn::update of a buffer outside the model: it was replayed every step, escaped the undo of a
  // failed step and, in dp::parallel, was written by every replica at once.
  nn::trainer<updates_static> u{updates_static{}};
  const auto outside =
      doctest::Contains("nn::update of a buffer of shape {} that is not part of the model being trained");
  CHECK_THROWS_WITH_AS((void)u.backward(nn::mse_loss, x, y), outside, dp::value_error);
  CHECK_THROWS_WITH_AS((void)u(x), outside, dp::value_error);
  dp::parallel<updates_static> pu{updates_static{}, {dp::cpu(0), dp::cpu(1)}};
  CHECK_THROWS_WITH_AS((void)pu.backward(nn::mse_loss, x, y), outside, dp::value_error);
  CHECK(updates_static::calls.value().item() == 0.f);
  nn::update(updates_static::calls, updates_static::calls + 1.f);  // outside any forward: an ordinary write
  CHECK(updates_static::calls.value().item() == 1.f);
  // Outside forward the model is written only by its owner: the handle is refused, edit writes.
  dp::tensor<float> h = t.model().calls.value();
  CHECK_THROWS_WITH_AS(h += 1.f, doctest::Contains("owner.edit"), dp::value_error);
  t.edit([](writes_through_handle& m) { m.calls.assign(m.calls.value() + 1.f); });
  CHECK(t.model().calls.value().item() == 1.f);
}

TEST_CASE("a trainer's model is written only through edit, the optimizer or a load; a handle kept after it is free") {
  nn::manual_seed(12);
  dp::tensor<float> kept;
  {
    nn::trainer<nn::linear<3, 2>> t{nn::linear<3, 2>{}};
    kept = t.model().weight.value();
    CHECK_THROWS_WITH_AS(kept.fill(0.f), doctest::Contains("owner.edit([](Model& m)"), dp::value_error);
    CHECK(kept.to_vector() != std::vector<float>(6, 0.f));
    t.edit([](nn::linear<3, 2>& m) { m.weight.assign(dp::full<float>({2, 3}, 2.f)); });
    CHECK(kept.to_vector() == std::vector<float>(6, 2.f));
    // A trainer wrapped in a parallel trains nothing: its edit would change a model nobody trains.
    dp::parallel<nn::linear<3, 2>> par{std::move(t), {dp::cpu(0), dp::cpu(1)}};
    CHECK_THROWS_WITH_AS(t.edit([](nn::linear<3, 2>&) {}),  // NOLINT(bugprone-use-after-move): t is retired
                         doctest::Contains("par.edit(f)"), dp::runtime_error);
    CHECK(par.model().weight.value().to_vector() == std::vector<float>(6, 2.f));
  }
  kept.fill(1.f);  // the trainer is gone: the memory is the caller's alone
  CHECK(kept.to_vector() == std::vector<float>(6, 1.f));
}

TEST_CASE("edit(f) changes the model it is given: a handle into another trainer's model stays read-only in f") {
  nn::manual_seed(16);
  nn::trainer<nn::linear<3, 2>> a{nn::linear<3, 2>{}}, b{nn::linear<3, 2>{}};
  dp::tensor<float> bs = b.model().weight.value();
  const auto before = bs.to_vector();
  CHECK_THROWS_WITH_AS(a.edit([&](nn::linear<3, 2>&) { bs.fill(0.f); }),
                       doctest::Contains("edit(f) wrote into a parameter or buffer of another model"), dp::value_error);
  CHECK(bs.to_vector() == before);
  // Each model through its own edit, nested or not.
  a.edit([&](nn::linear<3, 2>& m) {
    m.bias.assign(dp::ones<float>({2}));
    b.edit([](nn::linear<3, 2>& n) { n.bias.assign(dp::full<float>({2}, 2.f)); });
    m.weight.assign(dp::zeros<float>({2, 3}));  // a's scope again after b's closed
  });
  CHECK(a.model().bias.value().to_vector() == std::vector<float>{1.f, 1.f});
  CHECK(a.model().weight.value().to_vector() == std::vector<float>(6, 0.f));
  CHECK(b.model().bias.value().to_vector() == std::vector<float>{2.f, 2.f});
}

TEST_CASE("after edit every parameter is the trainer's memory again: a swapped or moved-from member comes home") {
  using layer = nn::linear<3, 2>;
  nn::manual_seed(13);
  nn::trainer<layer> t{layer{}};
  const auto flat = [&] { return dp::detail::trainer_access::flat_params(t).to_vector(); };
  const auto weight = [&] { return t.model().weight.value().to_vector(); };
  const auto old = weight();
  layer other;
  const auto fresh = other.weight.value().to_vector();
  REQUIRE(fresh != old);
  // A swap leaves the model holding a copy of `other` in memory of its own: its values come home.
  t.edit([&](layer& m) { std::swap(m, other); });
  CHECK(weight() == fresh);
  CHECK(other.weight.value().to_vector() == old);
  // A moved-from member is put back on the trainer's memory, its values as they were.
  dp::tensor<float> taken;
  t.edit([&](layer& m) {
    nn::parameter<float> gone = std::move(m.weight);
    taken = gone.value();
  });
  CHECK(weight() == fresh);
  // One of another shape is refused, and the member put back as it was.
  CHECK_THROWS_WITH_AS(t.edit([](layer& m) {
    const nn::parameter<float> gone = std::move(m.weight);
    m.weight = nn::parameter<float>{dp::zeros<float>({5, 5})};
  }),
                       doctest::Contains("edit(f) left weight of shape {5, 5} (the model's is {2, 3})"),
                       dp::shape_error);
  CHECK(weight() == fresh);
  // So is one f moved from before it threw: f's error goes on.
  CHECK_THROWS_WITH_AS(t.edit([](layer& m) {
    const nn::parameter<float> gone = std::move(m.weight);
    throw dp::value_error("f failed");
  }),
                       "f failed", dp::value_error);
  CHECK(weight() == fresh);
  // The optimizer updates what the model shows: the flat buffer and the model are one memory.
  auto opt = dp::optim::sgd(t, {.lr = 0.1});
  (void)t.backward(nn::mse_loss, dp::ones<float>({4, 3}), dp::zeros<float>({4, 2}));
  opt.step();
  CHECK(weight() != fresh);
  const auto now = flat();
  const dp::index_t weight_at = t.layout()[1].name == "weight" ? t.layout()[1].offset : t.layout()[0].offset;
  for (std::size_t i = 0; i < 6; ++i) {
    CHECK(now[static_cast<std::size_t>(weight_at) + i] == weight()[i]);
  }
  CHECK(taken.to_vector() == weight());  // the moved-to handle views the same memory, read-only
  CHECK_THROWS_AS(taken.fill(0.f), dp::value_error);
}

TEST_CASE("edit may change module settings: the next step traces again with them, and only a setting retraces") {
  nn::manual_seed(15);
  const settled start;
  const auto x = dp::randn<float>({6, 5}, dp::cpu(), 61);
  const auto y = dp::randn<float>({6, 3}, dp::cpu(), 62);
  nn::trainer<settled> t{start};
  (void)t.backward(nn::mse_loss, x, y);
  CHECK(t.plan_count() == 1);
  // Writing tensors keeps the traced step: it reads them where they are.
  t.edit([](settled& m) { m.b.bias.assign(m.b.bias.value() * 1.f); });
  CHECK(t.plan_count() == 1);
  // Settings are read when a step is traced: changing one drops the traced steps.
  t.edit([](settled& m) {
    m.drop.p = 0.f;
    m.ln.eps = 0.25f;
  });
  CHECK(t.plan_count() == 0);
  CHECK(t.model().drop.p == 0.f);
  const double edited = t.backward(nn::mse_loss, x, y);
  // What a trainer made from the edited model computes (dropout off, eps 0.25), and not the old loss.
  settled changed = start;
  changed.drop.p = 0.f;
  changed.ln.eps = 0.25f;
  nn::trainer<settled> fresh{changed};
  CHECK(edited == fresh.backward(nn::mse_loss, x, y));
  CHECK(dp::detail::trainer_access::flat_grads(t).to_vector() ==
        dp::detail::trainer_access::flat_grads(fresh).to_vector());
  // An f that throws after changing a setting still leaves no stale step behind.
  (void)t.backward(nn::mse_loss, x, y);
  CHECK_THROWS_WITH_AS(t.edit([](settled& m) {
    m.ln.eps = 0.5f;
    throw dp::value_error("f failed");
  }),
                       "f failed", dp::value_error);
  CHECK(t.plan_count() == 0);
  changed.ln.eps = 0.5f;
  nn::trainer<settled> again{changed};
  CHECK(t.backward(nn::mse_loss, x, y) == again.backward(nn::mse_loss, x, y));
}

TEST_CASE("edit cannot change how a buffer is synchronised: the policy is put back and the change refused") {
  nn::manual_seed(18);
  nn::trainer<classifier> t{classifier{}};
  REQUIRE(t.model().bn.num_batches_tracked.sync() == nn::buffer_sync::first);
  CHECK_THROWS_WITH_AS(t.edit([](classifier& m) {
    m.bn.num_batches_tracked = nn::buffer<std::int64_t>{dp::full<std::int64_t>({}, 7), nn::buffer_sync::mean};
  }),
                       doctest::Contains("changed the synchronisation policy of buffer bn.num_batches_tracked"),
                       dp::value_error);
  CHECK(t.model().bn.num_batches_tracked.sync() == nn::buffer_sync::first);
  CHECK(t.model().bn.num_batches_tracked.value().item() == 7);  // its value is f's, like any edit
}

// A user's loss that holds a value compares it, so a trainer sees when it changed (a lambda capturing
// the weight is a compile error: tests/compile_fail/loss_with_captures.cpp).
struct weighted_mse {
  float weight = 1.f;
  bool operator==(const weighted_mse&) const = default;
  auto operator()(const auto& p, const auto& target) const { return weight * nn::mse_loss(p, target); }
};

TEST_CASE("a step with another loss, or the same loss with other options, traces its own plan") {
  nn::manual_seed(17);
  const replay_model start;
  const auto x = dp::randn<float>({6, 5}, dp::cpu(), 63);
  const auto y = dp::randn<float>({6, 3}, dp::cpu(), 64);
  const dp::tensor<std::int64_t> labels = dp::cast<std::int64_t>(dp::rand<float>({6}, dp::cpu(), 65) * 2.99f);
  nn::trainer<replay_model> t{start};
  const auto mean_abs = [](auto p, auto target) { return dp::mean(dp::abs(p - target)); };
  // Each loss against a trainer that has seen only it: the same inputs' plan must not be reused.
  const auto alone = [&](const auto& loss, const auto& target) {
    nn::trainer<replay_model> fresh{start};
    return fresh.backward(loss, x, target);
  };
  CHECK(t.backward(nn::mse_loss, x, y) == alone(nn::mse_loss, y));
  CHECK(t.backward(mean_abs, x, y) == alone(mean_abs, y));
  CHECK(t.backward(nn::mse_loss_fn{.reduction = nn::reduction::sum}, x, y) ==
        alone(nn::mse_loss_fn{.reduction = nn::reduction::sum}, y));
  CHECK(t.backward(nn::cross_entropy, x, labels) == alone(nn::cross_entropy, labels));
  CHECK(t.backward(nn::cross_entropy_loss{.label_smoothing = 0.2f}, x, labels) ==
        alone(nn::cross_entropy_loss{.label_smoothing = 0.2f}, labels));
  CHECK(t.backward(weighted_mse{.weight = 2.f}, x, y) == alone(weighted_mse{.weight = 2.f}, y));
  CHECK(t.backward(weighted_mse{.weight = 3.f}, x, y) == alone(weighted_mse{.weight = 3.f}, y));
  CHECK(t.plan_count() == 7);
  // An equal loss made anew each step finds its plan: no trace, no growth.
  for (int i = 0; i < 3; ++i) {
    (void)t.backward(nn::cross_entropy_loss{.label_smoothing = 0.2f}, x, labels);
    (void)t.backward(nn::mse_loss, x, y);
    (void)t.backward(weighted_mse{.weight = 3.f}, x, y);
  }
  CHECK(t.plan_count() == 7);
}

// A loss whose == skips the member it uses: the trainer cannot see the change, check_trace can.
struct careless_mse {
  float weight = 1.f;
  bool operator==(const careless_mse&) const { return true; }
  auto operator()(const auto& p, const auto& target) const { return weight * nn::mse_loss(p, target); }
};

TEST_CASE("check_trace finds a loss whose == hides a changed value") {
  // w = 2, b = 0, x = 3 and a target of 0: mse is 36, so the weighted loss is 36 * weight.
  const auto x = dp::full<float>({1, 1}, 3.f);
  const auto y = dp::zeros<float>({1, 1});
  nn::trainer<nn::linear<1, 1>> t{nn::linear<1, 1>{}};
  t.edit([](nn::linear<1, 1>& m) {
    m.weight.assign(dp::full<float>({1, 1}, 2.f));
    m.bias.assign(dp::zeros<float>({1}));
  });
  CHECK(t.backward(careless_mse{.weight = 1.f}, x, y) == 36.0);
  CHECK(t.backward(careless_mse{.weight = 2.f}, x, y) == 36.0);  // replayed with weight 1
  t.check_trace(true);
  CHECK_THROWS_WITH_AS((void)t.backward(careless_mse{.weight = 2.f}, x, y),
                       doctest::Contains("step 3's loss is 36 replaying the plan traced before, but 72 when"),
                       dp::value_error);
}

TEST_CASE("arguments on another device or undefined are rejected, naming the argument and both devices") {
  nn::trainer<nn::linear<3, 2>> t{nn::linear<3, 2>{}};
  CHECK_THROWS_WITH_AS((void)t.backward(nn::mse_loss, dp::randn<float>({4, 3}, dp::cpu(1)), dp::randn<float>({4, 2})),
                       doctest::Contains("runs on cpu:0 but input 0 (argument 1 after the loss) is on cpu:1"),
                       dp::device_error);
  CHECK_THROWS_WITH_AS((void)t.backward(nn::mse_loss, dp::randn<float>({4, 3}), dp::randn<float>({4, 2}, dp::cpu(1))),
                       doctest::Contains("runs on cpu:0 but the target (last argument) is on cpu:1"), dp::device_error);
  CHECK_THROWS_WITH_AS((void)t.backward(nn::mse_loss, dp::randn<float>({4, 3}), dp::tensor<float>{}),
                       doctest::Contains("backward got an undefined tensor as the target (last argument)"),
                       dp::value_error);
}

TEST_CASE("a trainer keeps at most max_plans plans: a loss whose value changes every step does not grow memory") {
  // Each label smoothing is another loss, so another plan with its own activations; annealed every
  // step, the plans (and the memory they hold) grew with the steps.
  using model = nn::linear<3, 2>;
  const auto x = dp::randn<float>({4, 3}, dp::cpu(), 5);
  const dp::tensor<std::int64_t> y = dp::from_vector<std::int64_t>({0, 1, 1, 0});
  const auto smoothing = [](int k) {
    return nn::cross_entropy_loss{.label_smoothing = 0.001f * static_cast<float>(k)};
  };
  nn::trainer<model> t{model{}};
  const int cap = static_cast<int>(nn::trainer<model>::max_plans);
  for (int k = 0; k < cap; ++k) {
    (void)t.backward(smoothing(k), x, y);
  }
  CHECK(t.plan_count() == nn::trainer<model>::max_plans);
  const std::size_t full = dp::memory_usage(dp::cpu()).in_use;
  for (int k = cap; k < 3 * cap; ++k) {
    (void)t.backward(smoothing(k), x, y);
  }
  CHECK(t.plan_count() == nn::trainer<model>::max_plans);
  CHECK(dp::memory_usage(dp::cpu()).in_use <= full);
  // A loss whose plan went traces again, and gives what a fresh trainer gives.
  nn::trainer<model> fresh{model{t.model()}};
  CHECK(t.backward(smoothing(0), x, y) == fresh.backward(smoothing(0), x, y));
}

namespace {
/// mse scaled by `scale`, counting how often a trainer traced it with scale 1 (a loss runs only
/// when a step is traced; replays run its recorded operations).
struct counted_loss {
  float scale = 1;
  static inline int traced_at_one = 0;
  bool operator==(const counted_loss&) const = default;
  template <class O, class Y>
  auto operator()(const O& out, const Y& y) const {
    traced_at_one += scale == 1 ? 1 : 0;
    return nn::mse_loss(out, y) * scale;
  }
};
}  // namespace

TEST_CASE("the plan a trainer drops is the one used least recently, not the oldest") {
  using model = nn::linear<3, 2>;
  nn::trainer<model> t{model{}};
  const auto x = dp::randn<float>({4, 3}, dp::cpu(), 5);
  const auto y = dp::randn<float>({4, 2}, dp::cpu(), 6);
  counted_loss::traced_at_one = 0;
  // Scale 1, the first plan traced, is used between every two new ones: it stays the most recent.
  for (int k = 0; k < 3 * static_cast<int>(nn::trainer<model>::max_plans); ++k) {
    (void)t.backward(counted_loss{}, x, y);
    (void)t.backward(counted_loss{.scale = 2.f + static_cast<float>(k)}, x, y);
  }
  CHECK(counted_loss::traced_at_one == 1);
  CHECK(t.plan_count() == nn::trainer<model>::max_plans);
}

TEST_CASE("a small classifier learns a separable problem") {
  nn::manual_seed(7);
  using mlp = nn::sequential<nn::linear<2, 16>, nn::relu, nn::linear<16, 2>>;
  nn::trainer<mlp> t{mlp{}};
  auto opt = dp::optim::sgd(t, {.lr = 0.5, .momentum = 0.9});
  auto x = dp::randn<float>({64, 2}, dp::cpu(), 8);
  auto xs = x.to_vector();
  std::vector<std::int64_t> labels;
  for (int i = 0; i < 64; ++i) {
    labels.push_back(xs[2 * i] + xs[2 * i + 1] > 0 ? 1 : 0);
  }
  auto y = dp::from_vector<std::int64_t>(labels);
  float first = 0, last = 0;
  for (int i = 0; i < 100; ++i) {
    last = t.backward(nn::cross_entropy, x, y);
    if (i == 0) {
      first = last;
    }
    opt.step();
  }
  CHECK(last < 0.2f * first);
  t.eval();
  auto pred = dp::argmax(t(x), 1).to_vector();
  int right = 0;
  for (int i = 0; i < 64; ++i) {
    right += pred[i] == labels[i];
  }
  CHECK(right >= 60);
}

TEST_CASE("a steady-state dp::parallel step over host workers allocates nothing either") {
  dp::parallel<classifier> par{classifier{}, {dp::cpu(0), dp::cpu(1), dp::cpu(2)}};
  auto opt = dp::optim::sgd(par, {.lr = 1e-2, .momentum = 0.9});
  auto x = dp::randn<float>({30, 64}, dp::cpu(), 1);
  auto y = dp::from_vector<std::int64_t>(std::vector<std::int64_t>(30, 2));
  for (int i = 0; i < 3; ++i) {
    (void)par.backward(nn::cross_entropy, x, y);
    opt.step();
  }
  const long heap_before = heap_allocations.load();
  const auto before = dp::counters();
  for (int i = 0; i < 10; ++i) {
    (void)par.backward(nn::cross_entropy, x, y);
    opt.step();
  }
  CHECK(heap_allocations.load() - heap_before == 0);
  CHECK(dp::counters().allocations - before.allocations == 0);
}

TEST_CASE("a NaN in the inputs stops training at that step with a dp error; nothing is updated") {
  nn::trainer<classifier> t{classifier{}};
  auto opt = dp::optim::sgd(t, {.lr = 0.1});
  dp::tensor<float> x = dp::randn<float>({8, 64}, dp::cpu(), 1);
  const dp::tensor<std::int64_t> y = dp::zeros<std::int64_t>({8});
  (void)t.backward(nn::cross_entropy, x, y);
  opt.step();
  const auto before = dp::detail::trainer_access::flat_params(t).to_vector();
  x[3][5] = std::numeric_limits<float>::quiet_NaN();  // one bad feature: relu keeps it, so the loss shows it
  CHECK_THROWS_WITH_AS((void)t.backward(nn::cross_entropy, x, y), doctest::Contains("the loss of step 2 is NaN"),
                       dp::value_error);
  CHECK(t.gradients() == nn::grad_state::none);
  CHECK_THROWS_AS(opt.step(), dp::runtime_error);  // the poisoned gradients cannot be applied
  CHECK(dp::detail::trainer_access::flat_params(t).to_vector() == before);
  t.allow_non_finite_loss(true);  // asked for: the NaN is returned
  CHECK(std::isnan(t.backward(nn::cross_entropy, x, y)));
}

namespace {
// forward reads a number kept outside the model, so a traced step keeps the value it saw.
float outside_scale = 1.f;
struct reads_outside {
  nn::linear<1, 1> fc;
  auto forward(auto x) const { return fc(x) * outside_scale; }
};
// w = 2 and b = 0, so with x = 3 and a target of 0 the loss is (6 * outside_scale)^2.
template <class Owner>
void set_weights(Owner& o) {
  o.edit([](reads_outside& m) {
    m.fc.weight.assign(dp::full<float>({1, 1}, 2.f));
    m.fc.bias.assign(dp::zeros<float>({1}));
  });
}
}  // namespace

TEST_CASE("check_trace finds forward reading a value from outside the model that changed since the trace") {
  const auto x = dp::full<float>({1, 1}, 3.f);
  const auto y = dp::zeros<float>({1, 1});
  outside_scale = 1.f;
  nn::trainer<reads_outside> plain{reads_outside{}};
  set_weights(plain);
  CHECK(plain.backward(nn::mse_loss, x, y) == 36.0);
  outside_scale = 2.f;
  CHECK(plain.backward(nn::mse_loss, x, y) == 36.0);  // the pitfall: the replay kept 1, a fresh trace gives 144

  outside_scale = 1.f;
  nn::trainer<reads_outside> checked{reads_outside{}};
  set_weights(checked);
  checked.check_trace(true);
  CHECK(checked.backward(nn::mse_loss, x, y) == 36.0);
  CHECK(checked.backward(nn::mse_loss, x, y) == 36.0);  // replayed, and the same as a fresh trace
  outside_scale = 2.f;
  CHECK_THROWS_WITH_AS((void)checked.backward(nn::mse_loss, x, y),
                       doctest::Contains("dp: check_trace: step 3's loss is 36 replaying the plan traced before, but "
                                         "144 when forward is traced again: forward or the loss reads a value that "
                                         "changed since the trace without the trainer seeing it (a global"),
                       dp::value_error);
  CHECK(checked.steps() == 2);  // the failed step is undone
  CHECK(checked.gradients() == nn::grad_state::none);

  outside_scale = 1.f;
  dp::parallel<reads_outside> par{reads_outside{}, {dp::cpu(0), dp::cpu(1)}, {.check_trace = true}};
  set_weights(par);
  const auto x2 = dp::full<float>({2, 1}, 3.f);
  const auto y2 = dp::zeros<float>({2, 1});
  CHECK(par.backward(nn::mse_loss, x2, y2) == 36.0);
  CHECK(par.backward(nn::mse_loss, x2, y2) == 36.0);
  outside_scale = 0.5f;
  CHECK_THROWS_WITH_AS((void)par.backward(nn::mse_loss, x2, y2),
                       doctest::Contains("step 3's loss is 36 replaying the plan traced before, but 9 when"),
                       dp::value_error);
  outside_scale = 1.f;
}

namespace {
// A running mean whose momentum is read from outside the model: the loss never shows it.
float outside_momentum = 0.5f;
struct tracks_outside {
  nn::linear<1, 1> fc;
  nn::buffer<float> running{dp::zeros<float>({1})};
  auto forward(auto x) const {
    nn::update(running, (1.f - outside_momentum) * running + outside_momentum * dp::mean(nn::detach(x), 0));
    return fc(x);
  }
};
}  // namespace

TEST_CASE("check_trace finds a buffer update that reads a changed value from outside the model") {
  const auto x = dp::full<float>({2, 1}, 3.f);
  const auto y = dp::zeros<float>({2, 1});
  outside_momentum = 0.5f;
  nn::trainer<tracks_outside> t{tracks_outside{}};
  t.check_trace(true);
  (void)t.backward(nn::mse_loss, x, y);  // traced: running = 0.5 * 3 = 1.5
  (void)t.backward(nn::mse_loss, x, y);  // replayed and checked: 0.5 * 1.5 + 0.5 * 3 = 2.25
  CHECK(t.model().running.value().item() == 2.25f);
  outside_momentum = 1.f;  // a fresh trace gives 3, the replay 2.625; the loss is the same either way
  CHECK_THROWS_WITH_AS((void)t.backward(nn::mse_loss, x, y),
                       doctest::Contains("dp: check_trace: step 3 updates buffer 'running' one way replaying the plan "
                                         "traced before and another when forward is traced again"),
                       dp::value_error);
  CHECK(t.model().running.value().item() == 2.25f);  // the step is undone
  outside_momentum = 0.5f;
}

TEST_CASE("check_trace in evaluation mode: nn::update still counts each step once") {
  // nn::update runs in either mode, so the second trace's update must be put back in both.
  nn::trainer<counting> t{counting{}};
  t.eval();
  t.check_trace(true);
  const auto x = dp::from_vector<float>({1, 2, 3, 3, 4, 5}, {2, 3});
  for (int i = 0; i < 4; ++i) {
    (void)t.backward(nn::mse_loss, x, dp::zeros<float>({2, 2}));  // step 1 traces, steps 2-4 are checked
  }
  CHECK(t.model().calls.value().item() == 4.f);
}

TEST_CASE("check_trace changes nothing in a run whose forward reads only the model and its arguments") {
  // Batch statistics, dropout masks and running means: the second trace's buffer updates are put
  // back, so each replay starts from the state the step would have without the check.
  const auto x = dp::randn<float>({16, 64}, dp::cpu(), 5);
  const auto y = dp::from_vector<std::int64_t>({0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1, 2, 3, 4, 5}, {16});
  const auto run = [&](auto& owner) {
    auto opt = dp::optim::sgd(owner, {.lr = 0.05, .momentum = 0.9});
    std::vector<double> losses;
    for (int step = 0; step < 6; ++step) {
      losses.push_back(owner.backward(nn::cross_entropy, x, y));
      opt.step();
    }
    return std::pair{losses, owner.model().bn.running_var.value().to_vector()};
  };
  const classifier base{};
  nn::trainer<classifier> plain{base};
  nn::trainer<classifier> checked{base};
  checked.check_trace(true);
  const auto [plain_losses, plain_var] = run(plain);
  const auto [checked_losses, checked_var] = run(checked);
  CHECK(checked_losses == plain_losses);  // bit for bit
  CHECK(checked_var == plain_var);
  CHECK(dp::detail::trainer_access::flat_params(checked).to_vector() ==
        dp::detail::trainer_access::flat_params(plain).to_vector());
  CHECK(plain_losses.front() != plain_losses.back());  // it trained, so the comparisons could fail

  for (const bool deterministic : {false, true}) {
    CAPTURE(deterministic);
    const std::vector<dp::device> two{dp::cpu(0), dp::cpu(1)};
    dp::parallel<classifier> par_plain{base, two, {.deterministic = deterministic, .chunk = 4}};
    dp::parallel<classifier> par_checked{base, two, {.deterministic = deterministic, .chunk = 4, .check_trace = true}};
    const auto [a, va] = run(par_plain);
    const auto [b, vb] = run(par_checked);
    CHECK(a == b);
    CHECK(va == vb);
  }
}
