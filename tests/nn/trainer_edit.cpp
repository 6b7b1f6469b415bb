#include <cstddef>
#include <utility>
#include <vector>

#include <doctest/doctest.h>

#include <dp/dp.hpp>

#include "../support/models.hpp"

namespace nn = dp::nn;

using dp_test::classifier;

namespace {
struct settled {
  nn::linear<5, 8> a;
  nn::dropout drop{0.5f};
  nn::layer_norm<8> ln;
  nn::linear<8, 3> b;
  auto forward(auto x) const { return b(ln(drop(dp::tanh(a(x))))); }
};
}  // namespace

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
