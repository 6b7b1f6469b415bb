#include <atomic>
#include <cstdlib>
#include <new>
#include <utility>
#include <vector>

#include <doctest/doctest.h>

#include <dp/dp.hpp>

#include "../support/models.hpp"

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

using dp_test::classifier;
using dp_test::replay_model;

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
