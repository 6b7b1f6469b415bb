#include <cmath>
#include <limits>
#include <vector>

#include <doctest/doctest.h>

#include <dp/dp.hpp>

namespace nn = dp::nn;

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
