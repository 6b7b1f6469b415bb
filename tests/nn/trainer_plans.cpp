#include <cmath>
#include <filesystem>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#include <doctest/doctest.h>

#include <dp/dp.hpp>

#include "../support/models.hpp"
#include "../support/scratch.hpp"

namespace nn = dp::nn;

using dp_test::classifier;
using dp_test::replay_model;

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
/// Three steps of a classifier (batch norm, dropout) with a batch of NaN between the first two,
/// skipped, or without it: the parameters and batch statistics after the last step.
template <class Owner>
std::vector<float> run_around_a_nan_batch(Owner& t, bool nan_batch) {
  auto opt = dp::optim::sgd(t, {.lr = 0.05, .momentum = 0.9});
  const dp::tensor<std::int64_t> y = dp::from_vector<std::int64_t>({0, 1, 2, 3, 4, 5, 6, 7});
  for (int s = 0; s < 3; ++s) {
    if (s == 1 && nan_batch) {
      dp::tensor<float> bad = dp::randn<float>({8, 64}, dp::cpu(), 99);
      bad[3][5] = std::numeric_limits<float>::quiet_NaN();
      CHECK(std::isnan(t.backward(nn::cross_entropy, bad, y)));
      t.skip_step();
      CHECK(t.gradients() == nn::grad_state::none);
      CHECK(t.steps() == 1);
      CHECK_THROWS_WITH_AS(t.skip_step(), doctest::Contains("dp: skip_step: no step to skip"), dp::value_error);
      CHECK_THROWS_AS(opt.step(), dp::runtime_error);  // the NaN gradients are gone, not applied
      // Nothing waits for a step: a checkpoint may be saved (it was refused until the next step).
      const std::string path = dp_test::scratch_path("after_skip.ckpt");
      dp::io::save_checkpoint(path, t, opt, {.epoch = 0, .batch = 2});
      std::filesystem::remove(path);
    }
    CHECK(std::isfinite(t.backward(nn::cross_entropy, dp::randn<float>({8, 64}, dp::cpu(), 10 + s), y)));
    opt.step();
  }
  std::vector<float> out;
  nn::for_each_tensor(t.model(), [&](const std::string&, const auto& member) {
    if constexpr (std::is_same_v<typename std::remove_cvref_t<decltype(member)>::value_type, float>) {
      const auto v = member.value().to_vector();
      out.insert(out.end(), v.begin(), v.end());
    }
  });
  return out;
}
}  // namespace

TEST_CASE("skip_step drops a step whose loss came back NaN: the run goes on with the bits of one that never saw it") {
  // PyTorch's recipe (zero_grad and go on) keeps the batch statistics the NaN batch moved and its
  // dropout draw; here the model is put back, so the bits match a run without the batch.
  nn::manual_seed(21);
  nn::trainer<classifier> clean{classifier{}};
  nn::manual_seed(21);
  nn::trainer<classifier> skipping{classifier{}};
  skipping.allow_non_finite_loss(true);
  CHECK(run_around_a_nan_batch(skipping, true) == run_around_a_nan_batch(clean, false));
  nn::manual_seed(21);
  dp::parallel<classifier> par_clean{classifier{}, {dp::cpu(0), dp::cpu(1)}};
  nn::manual_seed(21);
  dp::parallel<classifier> par_skipping{classifier{}, {dp::cpu(0), dp::cpu(1)}, {.allow_non_finite_loss = true}};
  CHECK(run_around_a_nan_batch(par_skipping, true) == run_around_a_nan_batch(par_clean, false));
}

TEST_CASE("skip_step refuses a step whose loss was finite or not read, and one the optimizer took") {
  nn::trainer<classifier> t{classifier{}};
  t.allow_non_finite_loss(true);
  auto opt = dp::optim::sgd(t, {.lr = 0.05});
  const auto x = dp::randn<float>({8, 64}, dp::cpu(), 1);
  const dp::tensor<std::int64_t> y = dp::zeros<std::int64_t>({8});
  CHECK_THROWS_WITH_AS(t.skip_step(), doctest::Contains("no step to skip"), dp::value_error);
  (void)t.backward(nn::cross_entropy, x, y);
  CHECK_THROWS_WITH_AS(t.skip_step(), doctest::Contains("the last backward's loss was finite, or not read"),
                       dp::value_error);
  CHECK(t.gradients() == nn::grad_state::complete);  // refused: the step stands
  CHECK(t.steps() == 1);
  opt.step();
  CHECK_THROWS_WITH_AS(t.skip_step(), doctest::Contains("no step to skip"), dp::value_error);
  (void)t.backward_async(nn::cross_entropy, x, y);  // its loss is never read: it may be finite
  CHECK_THROWS_WITH_AS(t.skip_step(), doctest::Contains("or not read (backward_async)"), dp::value_error);
  // After edit, putting back the buffers from before the step would undo part of the edit.
  dp::tensor<float> bad = x * 1.f;
  bad[0][0] = std::numeric_limits<float>::quiet_NaN();
  CHECK(std::isnan(t.backward(nn::cross_entropy, bad, y)));
  t.edit([](classifier& m) { m.bn.running_mean.assign(dp::full<float>({128}, 0.5f)); });
  CHECK_THROWS_WITH_AS(t.skip_step(), doctest::Contains("or the model was edited since"), dp::value_error);
  CHECK(t.model().bn.running_mean.value().to_vector() == std::vector<float>(128, 0.5f));
}
