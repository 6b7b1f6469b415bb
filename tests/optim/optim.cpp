#include <cmath>
#include <limits>
#include <vector>

#include <doctest/doctest.h>

#include <dp/dp.hpp>

namespace nn = dp::nn;

namespace {
/// A trainer whose gradients the test sets by hand.
struct one {
  nn::parameter<double> w{dp::from_vector<double>({1.0, -2.0, 0.5})};
  auto forward(auto x) const { return x * w; }
};
struct one_float {
  nn::parameter<float> w{dp::from_vector<float>({1.f, -2.f})};
  auto forward(auto x) const { return x * w; }
};
void set_grads(nn::trainer<one>& t, std::vector<double> g) {
  dp::tensor<double>(dp::detail::trainer_access::flat_grads(t)).slice(0, 0, 3) = dp::from_vector<double>(g);
  dp::detail::replica_access::set_gradients(t, nn::grad_state::complete);
}
std::vector<double> weights(nn::trainer<one>& t) {
  auto v = dp::detail::trainer_access::flat_params(t).to_vector();
  return {v[0], v[1], v[2]};
}
const std::vector<std::vector<double>> grads{{0.1, -0.3, 0.7}, {0.2, 0.1, -0.4}, {-0.5, 0.6, 0.05}};
}  // namespace

TEST_CASE("sgd with momentum, dampening, weight decay and Nesterov follows PyTorch's update rule") {
  for (bool nesterov : {false, true}) {
    nn::trainer<one> t{one{}};
    const double lr = 0.1, mom = 0.9, damp = nesterov ? 0.0 : 0.2, wd = 0.01;
    auto opt =
        dp::optim::sgd(t, {.lr = lr, .momentum = mom, .dampening = damp, .nesterov = nesterov, .weight_decay = wd});
    std::vector<double> p{1.0, -2.0, 0.5}, buf(3);
    for (int s = 0; s < 3; ++s) {
      set_grads(t, grads[s]);
      opt.step();
      for (int i = 0; i < 3; ++i) {
        const double d = grads[s][i] + wd * p[i];
        buf[i] = s == 0 ? d : mom * buf[i] + (1 - damp) * d;
        p[i] -= lr * (nesterov ? d + mom * buf[i] : buf[i]);
      }
    }
    const auto w = weights(t);
    for (int i = 0; i < 3; ++i) {
      CHECK(w[i] == doctest::Approx(p[i]).epsilon(1e-12));
    }
  }
}

TEST_CASE("adam and adamw follow PyTorch's bias-corrected update") {
  for (bool decoupled : {false, true}) {
    nn::trainer<one> t{one{}};
    const double lr = 0.01, b1 = 0.9, b2 = 0.999, eps = 1e-8, wd = 0.05;
    std::vector<double> p{1.0, -2.0, 0.5}, m(3), v(3);
    auto run = [&](auto& opt) {
      for (int s = 0; s < 3; ++s) {
        set_grads(t, grads[s]);
        opt.step();
        for (int i = 0; i < 3; ++i) {
          double g = grads[s][i];
          if (decoupled) {
            p[i] *= 1 - lr * wd;
          } else {
            g += wd * p[i];
          }
          m[i] = b1 * m[i] + (1 - b1) * g;
          v[i] = b2 * v[i] + (1 - b2) * g * g;
          const double bc1 = 1 - std::pow(b1, s + 1), bc2 = 1 - std::pow(b2, s + 1);
          p[i] -= lr * (m[i] / bc1) / (std::sqrt(v[i] / bc2) + eps);
        }
      }
    };
    if (decoupled) {
      auto opt = dp::optim::adamw(t, {.lr = lr, .weight_decay = wd});
      run(opt);
      CHECK(opt.state().size() == 2);
      CHECK(opt.state()[0].name == "w.exp_avg");
    } else {
      auto opt = dp::optim::adam(t, {.lr = lr, .weight_decay = wd});
      run(opt);
    }
    const auto w = weights(t);
    for (int i = 0; i < 3; ++i) {
      CHECK(w[i] == doctest::Approx(p[i]).epsilon(1e-9));
    }
  }
}

TEST_CASE("weight decay left unset takes PyTorch's default: 0.01 for adamw, 0 for adam") {
  // One step from w with gradient g: adamw decays w by lr * 0.01 first; Adam's first step is lr * sign(g).
  const double lr = 0.1;
  nn::trainer<one> a{one{}}, b{one{}};
  auto wa = dp::optim::adamw(a, {.lr = lr});
  auto wb = dp::optim::adam(b, {.lr = lr});
  set_grads(a, grads[0]);
  set_grads(b, grads[0]);
  wa.step();
  wb.step();
  const std::vector<double> w0{1.0, -2.0, 0.5};
  for (int i = 0; i < 3; ++i) {
    const double sign = grads[0][static_cast<std::size_t>(i)] > 0 ? 1.0 : -1.0;
    const double step = lr * std::abs(grads[0][static_cast<std::size_t>(i)]) /
                        (std::abs(grads[0][static_cast<std::size_t>(i)]) + 1e-8) * sign;
    CHECK(weights(a)[static_cast<std::size_t>(i)] == doctest::Approx(w0[i] * (1 - lr * 0.01) - step).epsilon(1e-12));
    CHECK(weights(b)[static_cast<std::size_t>(i)] == doctest::Approx(w0[i] - step).epsilon(1e-12));
  }
}

TEST_CASE("learning-rate schedules: step, cosine, linear, warm-up") {
  using namespace dp::optim;
  CHECK(step_lr(10, 0.5).factor(9) == 1.0);
  CHECK(step_lr(10, 0.5).factor(25) == 0.25);
  CHECK(cosine_lr(100).factor(0) == doctest::Approx(1.0));
  CHECK(cosine_lr(100).factor(50) == doctest::Approx(0.5));
  CHECK(cosine_lr(100, 0.1).factor(100) == doctest::Approx(0.1));
  CHECK(linear_lr(10, 0.0).factor(5) == doctest::Approx(0.5));
  // Warm-up, then the schedule from its own step 0 (SequentialLR of LinearLR and the decay; Hugging
  // Face's get_cosine_schedule_with_warmup(10, 110)): the full rate at step 10, half of it at 60.
  const auto w = with_warmup(cosine_lr(100), 10);
  CHECK(w.factor(0) == doctest::Approx(0.0));
  CHECK(w.factor(5) == doctest::Approx(0.5));
  CHECK(w.factor(9) == doctest::Approx(0.9));
  CHECK(w.factor(10) == doctest::Approx(1.0));
  CHECK(w.factor(60) == doctest::Approx(0.5));
  CHECK(w.factor(110) == doctest::Approx(0.0));
  CHECK(with_warmup(linear_lr(4, 0.2), 2, 0.5).factor(1) == doctest::Approx(0.75));
  CHECK(with_warmup(linear_lr(4, 0.2), 2, 0.5).factor(4) == doctest::Approx(0.6));
  CHECK(with_warmup(step_lr(3, 0.5), 2).factor(5) == doctest::Approx(0.5));
  nn::trainer<one> t{one{}};
  auto opt = dp::optim::sgd(t, {.lr = 1.0, .schedule = step_lr(1, 0.5)});
  set_grads(t, {1, 1, 1});
  opt.step();
  CHECK(opt.current_lr() == 0.5);
  CHECK(weights(t)[0] == doctest::Approx(0.0));
}

TEST_CASE("the step count lives with the optimizer's state: counted, restored, and driving the schedule") {
  nn::trainer<one> t{one{}};
  auto opt = dp::optim::sgd(t, {.lr = 1.0, .schedule = dp::optim::step_lr(2, 0.5)});
  for (int s = 0; s < 3; ++s) {
    set_grads(t, {0, 0, 0});
    opt.step();
  }
  CHECK(opt.steps() == 3);
  CHECK(opt.current_lr() == 0.5);  // step 3 of a halving every 2 steps
  opt.load_state(10, {});
  CHECK(opt.steps() == 10);
  CHECK(opt.current_lr() == 1.0 / 32);
  const auto w0 = weights(t);
  set_grads(t, {1, 1, 1});
  opt.step();  // takes step 10's rate
  CHECK(weights(t)[0] == w0[0] - 1.0 / 32);
  CHECK(opt.steps() == 11);
}

TEST_CASE("load_state takes exactly the state state() names, or refuses and changes nothing") {
  nn::trainer<one> t{one{}};
  auto opt = dp::optim::adam(t, {.lr = 0.01});
  set_grads(t, grads[0]);
  opt.step();
  const auto saved = opt.state();  // "w.exp_avg" and "w.exp_avg_sq", shape {3}
  REQUIRE(saved.size() == 2);
  const auto m0 = saved[0].value.to_vector();
  using state = std::vector<dp::optim::named_state<double>>;
  const auto refused = [&](const state& s, std::int64_t steps, const char* what) {
    CAPTURE(what);
    CHECK_THROWS_WITH_AS(opt.load_state(steps, s), doctest::Contains(what), dp::error);
    CHECK(opt.steps() == 1);  // nothing was written
    CHECK(opt.state()[0].value.to_vector() == m0);
  };
  const auto zeros = dp::zeros<double>({3});
  refused({{"w.exp_avg", zeros}, {"w.exp_avg_sq", zeros}, {"w.exp_avgg", zeros}}, 5,
          "adam: load_state: no state is named 'w.exp_avgg' (expected '<parameter>.exp_avg' or "
          "'<parameter>.exp_avg_sq' for a parameter)");
  refused({{"w.exp_avg", zeros}}, 5, "'w.exp_avg_sq' is missing");
  refused({{"w.exp_avg", zeros}, {"w.exp_avg", zeros}}, 5, "'w.exp_avg' is given twice");
  // A single value once filled the whole slot by broadcasting.
  refused({{"w.exp_avg", dp::zeros<double>({1})}, {"w.exp_avg_sq", zeros}}, 5,
          "'w.exp_avg' has shape {1}, expected its parameter's {3}");
  refused({{"w.exp_avg", zeros}, {"w.exp_avg_sq", zeros}}, -1, "the step count must lie in [0, 2^53), got -1");
  // The count is a double on the device: INT64_MAX came back as INT64_MIN, 2^53 + 1 stopped counting.
  refused({{"w.exp_avg", zeros}, {"w.exp_avg_sq", zeros}}, std::int64_t{1} << 53,
          "the step count must lie in [0, 2^53), got 9007199254740992");
  refused({{"w.exp_avg", zeros}, {"w.exp_avg_sq", zeros}}, INT64_MAX, "got 9223372036854775807");
  // Values the next step would turn into NaN weights, with no error: sqrt of a negative mean of
  // squares, and a moment that is not a number.
  refused({{"w.exp_avg", zeros}, {"w.exp_avg_sq", dp::from_vector<double>({0, 0, -1e-8})}}, 5,
          "adam: load_state: 'w.exp_avg_sq' holds -1e-08 at element 2; expected finite values >= 0 (it is a running "
          "mean of squared gradients)");
  refused({{"w.exp_avg", dp::from_vector<double>({0, NAN, 0})}, {"w.exp_avg_sq", zeros}}, 5,
          "adam: load_state: 'w.exp_avg' holds nan at element 1; expected finite values (");
  refused({{"w.exp_avg", dp::from_vector<double>({INFINITY, 0, 0})}, {"w.exp_avg_sq", zeros}}, 5,
          "'w.exp_avg' holds inf at element 0");
  opt.load_state(5, {{"w.exp_avg_sq", zeros}, {"w.exp_avg", dp::full<double>({3}, 2.0)}});  // any order
  CHECK(opt.steps() == 5);
  CHECK(opt.state()[0].value.to_vector() == std::vector<double>{2, 2, 2});
  // An optimizer that keeps no state takes none.
  auto plain = dp::optim::sgd(t, {.lr = 0.1});
  CHECK_THROWS_WITH_AS(plain.load_state(0, {{"w.momentum_buffer", zeros}}),
                       doctest::Contains("sgd: load_state: no state is named 'w.momentum_buffer' (this optimizer "
                                         "keeps none)"),
                       dp::value_error);
}

TEST_CASE("sgd uses a loaded momentum buffer on its next step, at any step count, as PyTorch does") {
  // PyTorch starts the buffer at the gradient only when it has none; state converted from PyTorch
  // comes with 0 steps. The step count decided it, so the loaded buffer was overwritten by the gradient.
  for (const double damp : {0.0, 0.2}) {
    CAPTURE(damp);
    nn::trainer<one> t{one{}};
    auto opt = dp::optim::sgd(t, {.lr = 0.1, .momentum = 0.9, .dampening = damp});
    opt.load_state(0, {{"w.momentum_buffer", dp::full<double>({3}, 1.0)}});
    set_grads(t, {0.5, 0.5, 0.5});
    opt.step();
    // buf = 0.9 * 1 + (1 - damp) * 0.5: 1.4 without dampening, 1.3 with 0.2; w -= 0.1 * buf.
    const double buf = damp == 0 ? 1.4 : 1.3;
    CHECK(opt.state()[0].value.to_vector()[0] == doctest::Approx(buf).epsilon(1e-12));
    const auto w = weights(t);
    CHECK(w[0] == doctest::Approx(1.0 - 0.1 * buf).epsilon(1e-12));
    CHECK(w[1] == doctest::Approx(-2.0 - 0.1 * buf).epsilon(1e-12));
    CHECK(w[2] == doctest::Approx(0.5 - 0.1 * buf).epsilon(1e-12));
    CHECK(opt.steps() == 1);
  }
}

TEST_CASE("sgd's state saved before its first step loads back as no buffer: the next step starts at the gradient") {
  // state() gives zeros before the first step; read as a buffer, dampening 0.2 would take 0.8 of the
  // first gradient. A load refused for its shape changes nothing either.
  nn::trainer<one> t{one{}};
  auto opt = dp::optim::sgd(t, {.lr = 0.1, .momentum = 0.9, .dampening = 0.2});
  CHECK_THROWS_AS(opt.load_state(0, {{"w.momentum_buffer", dp::full<double>({2}, 1.0)}}), dp::shape_error);
  CHECK_THROWS_WITH_AS(opt.load_state(0, {{"w.momentum_buffer", dp::from_vector<double>({1, NAN, 1})}}),
                       doctest::Contains("sgd: load_state: 'w.momentum_buffer' holds nan at element 1"),
                       dp::value_error);
  opt.load_state(0, opt.state());
  set_grads(t, {0.5, 0.5, 0.5});
  opt.step();
  CHECK(opt.state()[0].value.to_vector() == std::vector<double>{0.5, 0.5, 0.5});  // buf = g
  // From then on the buffer holds a value: 0.9 * 0.5 + 0.8 * 1 = 1.25.
  set_grads(t, {1, 1, 1});
  opt.step();
  CHECK(opt.state()[0].value.to_vector()[0] == doctest::Approx(1.25).epsilon(1e-12));
}

TEST_CASE("state() hands out copies: writing to them changes neither the optimizer nor any replica") {
  // Two host replicas: a view of replica 0's state, written by the caller, would make it differ from
  // replica 1's, and the next step would update the two copies of the weights differently.
  const auto run = [](auto make_opt) {
    nn::trainer<one> reference{one{}};
    dp::parallel<one> par{one{}, {dp::cpu(0), dp::cpu(1)}};
    auto ro = make_opt(reference);
    auto po = make_opt(par);
    const auto x = dp::from_vector<double>({1.0, 2.0, 3.0, 4.0, 5.0, 6.0}).reshape({2, 3});
    const auto y = dp::from_vector<double>({0.5, 0.0, -1.0, 2.0, 1.0, 0.0}).reshape({2, 3});
    for (int step = 0; step < 3; ++step) {
      (void)reference.backward(nn::mse_loss, x, y);
      ro.step();
      (void)par.backward(nn::mse_loss, x, y);
      po.step();
      const auto before = po.state()[0].value.to_vector();
      for (auto& s : po.state()) {
        s.value.fill(1e6);
      }
      CHECK(po.state()[0].value.to_vector() == before);
    }
    const auto want = weights(reference);
    dp::detail::replica_access::for_each_replica(par, [&](std::size_t r, const auto& w, const auto&) {
      CAPTURE(r);
      const auto got = w.to_vector();
      for (std::size_t i = 0; i < want.size(); ++i) {
        CHECK(got[i] == doctest::Approx(want[i]).epsilon(1e-9));
      }
    });
  };
  run([](auto& owner) { return dp::optim::adam(owner, {.lr = 0.01}); });
  run([](auto& owner) { return dp::optim::sgd(owner, {.lr = 0.01, .momentum = 0.9}); });
}

TEST_CASE(
    "a copy of an optimizer has its own state and step count: stepping one leaves the other as it was; a move takes "
    "them") {
  const auto values = [](const auto& opt) {
    std::vector<std::vector<double>> out;
    for (const auto& s : opt.state()) {
      out.push_back(s.value.to_vector());
    }
    return out;
  };
  const auto run = [&](auto make_opt) {
    nn::trainer<one> t{one{}};
    auto opt = make_opt(t);
    set_grads(t, grads[0]);
    opt.step();
    const auto after_one = values(opt);
    auto copy = opt;
    set_grads(t, grads[1]);
    copy.step();
    CHECK(opt.steps() == 1);
    CHECK(copy.steps() == 2);
    CHECK(values(opt) == after_one);
    CHECK(values(copy) != after_one);
    // Assignment copies too: the assigned one steps on alone.
    const auto after_two = values(copy);
    opt = copy;
    set_grads(t, grads[2]);
    opt.step();
    CHECK(opt.steps() == 3);
    CHECK(copy.steps() == 2);
    CHECK(values(copy) == after_two);
    // A move takes the other's state and step count; a fresh optimizer starts over.
    opt = std::move(copy);
    CHECK(opt.steps() == 2);
    CHECK(values(opt) == after_two);
    opt = make_opt(t);
    CHECK(opt.steps() == 0);
  };
  run([](auto& owner) { return dp::optim::sgd(owner, {.lr = 0.1, .momentum = 0.9}); });
  run([](auto& owner) { return dp::optim::adam(owner, {.lr = 0.1}); });
  run([](auto& owner) { return dp::optim::adamw(owner, {.lr = 0.1}); });
}

TEST_CASE("an optimizer's buffers take assigned values in place, by copy or by move, where the layout matches") {
  // A step captured in a CUDA graph keeps the addresses of the state it updates: an assignment that
  // took the other optimizer's buffers would leave the graph writing freed memory.
  using buffers = dp::optim::detail::replica_buffers<float>;
  const auto make = [](std::vector<float> a, std::vector<float> b) {
    return buffers{std::vector<dp::tensor<float>>{dp::from_vector<float>(a), dp::from_vector<float>(b)}};
  };
  buffers mine = make({1, 2, 3}, {4, 5});
  const float* first = mine[0].data();
  const float* second = mine[1].data();
  const buffers theirs = make({6, 7, 8}, {9, 10});
  mine = theirs;
  CHECK(mine[0].data() == first);
  CHECK(mine[1].data() == second);
  CHECK(mine[0].to_vector() == std::vector<float>{6, 7, 8});
  CHECK(theirs[0].data() != first);
  mine = make({11, 12, 13}, {14, 15});
  CHECK(mine[0].data() == first);
  CHECK(mine[1].data() == second);
  CHECK(mine[1].to_vector() == std::vector<float>{14, 15});
  // Another layout cannot be written in place: the buffers are replaced.
  buffers other = make({1, 2}, {3});
  const float* others = other[0].data();
  mine = std::move(other);
  CHECK(mine[0].data() == others);
  CHECK(mine[0].to_vector() == std::vector<float>{1, 2});
}

TEST_CASE("clip_grad_norm scales to the maximum norm and returns the norm before") {
  nn::trainer<one> t{one{}};
  set_grads(t, {3, 0, 4});
  CHECK(dp::optim::clip_grad_norm(t, 1.0) == doctest::Approx(5.0));
  const auto g = dp::detail::trainer_access::flat_grads(t).to_vector();
  CHECK(g[0] == doctest::Approx(0.6).epsilon(1e-5));
  CHECK(g[2] == doctest::Approx(0.8).epsilon(1e-5));
  set_grads(t, {0.3, 0, 0.4});
  CHECK(dp::optim::clip_grad_norm(t, 1.0) == doctest::Approx(0.5));
  CHECK(dp::detail::trainer_access::flat_grads(t).to_vector()[0] == doctest::Approx(0.3));
}

namespace {
struct three_floats {
  nn::parameter<float> w{dp::zeros<float>({3})};
  auto forward(auto x) const { return x * w; }
};
}  // namespace

TEST_CASE("adam with a beta that is 1 in float takes PyTorch's first step: 1 - beta is taken in double") {
  // The first step is lr * sign(g) whatever the betas (bias correction); with beta = 1 - 1e-9,
  // 1 - float(beta) was 0: v stayed 0 and w moved by lr * g / eps = 2e5 (beta2), or m stayed 0 and
  // w did not move (beta1).
  for (const auto& [beta1, beta2] : {std::pair{0.9, 1 - 1e-9}, std::pair{1 - 1e-9, 0.999}}) {
    CAPTURE(beta1);
    nn::trainer<three_floats> t{three_floats{}};
    auto opt = dp::optim::adam(t, {.lr = 1e-3, .beta1 = beta1, .beta2 = beta2});
    dp::tensor<float>(dp::detail::trainer_access::flat_grads(t)).slice(0, 0, 3) =
        dp::from_vector<float>({-2.f, 0.5f, 3.f});
    dp::detail::replica_access::set_gradients(t, nn::grad_state::complete);
    opt.step();
    const auto w = dp::detail::trainer_access::flat_params(t).to_vector();
    CHECK(w[0] == doctest::Approx(1e-3).epsilon(1e-3));
    CHECK(w[1] == doctest::Approx(-1e-3).epsilon(1e-3));
    CHECK(w[2] == doctest::Approx(-1e-3).epsilon(1e-3));
  }
}

TEST_CASE("clip_grad_norm sums float squares in double, and refuses a norm that is not finite") {
  nn::trainer<three_floats> t{three_floats{}};
  const auto set = [&](std::vector<float> g) {
    dp::tensor<float>(dp::detail::trainer_access::flat_grads(t)).slice(0, 0, 3) = dp::from_vector<float>(g);
    dp::detail::replica_access::set_gradients(t, nn::grad_state::complete);
  };
  set({3e19f, 3e19f, 3e19f});  // each square overflows float; the norm is sqrt(3) 3e19
  CHECK(dp::optim::clip_grad_norm(t, 1.0) == doctest::Approx(5.196152422706632e19));
  const auto clipped = dp::detail::trainer_access::flat_grads(t).to_vector();
  for (int i = 0; i < 3; ++i) {  // the flat buffer's padding after them stays 0
    CHECK(clipped[static_cast<std::size_t>(i)] == doctest::Approx(0.5773502691896258).epsilon(1e-5));
  }
  const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
  for (float bad : {inf, nan}) {
    set({bad, 0.f, 1.f});
    CHECK_THROWS_WITH_AS((void)dp::optim::clip_grad_norm(t, 1.0), doctest::Contains("a gradient is infinite or NaN"),
                         dp::value_error);
    CHECK(t.gradients() == nn::grad_state::none);                            // an optimizer's step is refused now
    CHECK(dp::detail::trainer_access::flat_grads(t).to_vector()[2] == 1.f);  // nothing was scaled
  }
}

namespace {
struct normed_sqrt {
  nn::batch_norm<2> bn;
  nn::parameter<float> w{dp::zeros<float>({2})};
  auto forward(auto x) const { return bn(x) * dp::sqrt(w); }  // sqrt's gradient at 0 is infinite
};
}  // namespace

TEST_CASE("a clip_grad_norm that refuses the gradients undoes their step: batch statistics and step count as before") {
  // The loss is finite (the output is 0), so backward succeeds; the gradient of w is not. The step
  // then fails whole, as one with a non-finite loss does: batch_norm's running statistics, its batch
  // count and the trainer's step count are put back, so a retried batch is not counted twice.
  const auto run = [](auto& t) {
    const auto x = dp::from_vector<float>({1, 2, 3, 5, 4, 1, 2, 7}, {4, 2});
    CHECK(t.backward(nn::mse_loss, x, dp::ones<float>({4, 2})) == doctest::Approx(1.0));
    REQUIRE(t.model().bn.num_batches_tracked.value().item() == 1);  // forward counted the batch
    CHECK_THROWS_WITH_AS((void)dp::optim::clip_grad_norm(t, 1.0), doctest::Contains("a gradient is infinite or NaN"),
                         dp::value_error);
    CHECK(t.gradients() == nn::grad_state::none);
    CHECK(t.steps() == 0);
    CHECK(t.model().bn.num_batches_tracked.value().item() == 0);
    CHECK(t.model().bn.running_mean.value().to_vector() == std::vector<float>{0.f, 0.f});
    CHECK(t.model().bn.running_var.value().to_vector() == std::vector<float>{1.f, 1.f});
  };
  nn::trainer<normed_sqrt> one_device{normed_sqrt{}};
  run(one_device);
  dp::parallel<normed_sqrt> two_workers{normed_sqrt{}, {dp::cpu(0), dp::cpu(1)}};
  run(two_workers);
}

TEST_CASE("clip_grad_norm clips double gradients whose squares overflow double, and returns their norm") {
  // 1e160 squared is 1e320, past double's 1.8e308: the sum was inf, the error said a gradient was
  // infinite or NaN, and the gradients were dropped. The norm is 1e160; clipped to 1, g = 1e160 / (1e160 + 1e-6).
  nn::trainer<one> t{one{}};
  set_grads(t, {1e160, 0, 0});
  CHECK(dp::optim::clip_grad_norm(t, 1.0) == doctest::Approx(1e160));
  const auto g = dp::detail::trainer_access::flat_grads(t).to_vector();
  CHECK(g[0] == doctest::Approx(1.0).epsilon(1e-12));
  CHECK(g[1] == 0.0);
  CHECK(g[2] == 0.0);
  CHECK(t.gradients() == nn::grad_state::complete);  // still there for the optimizer's step
  // An infinite gradient among them is still refused, in those words.
  set_grads(t, {1e160, std::numeric_limits<double>::infinity(), 0});
  CHECK_THROWS_WITH_AS((void)dp::optim::clip_grad_norm(t, 1.0), doctest::Contains("a gradient is infinite or NaN"),
                       dp::value_error);
}

TEST_CASE("sgd refuses an option outside its range, naming the option, its value and the rule") {
  nn::trainer<one> t{one{}};
  const auto refused = [&](dp::optim::sgd_options o, const char* what) {
    CAPTURE(what);
    CHECK_THROWS_WITH_AS(dp::optim::sgd(t, o), doctest::Contains(what), dp::value_error);
  };
  refused({.lr = -0.1}, "dp: sgd: lr is -0.1; expected a finite value >= 0");
  refused({.lr = NAN}, "dp: sgd: lr is nan; expected a finite value >= 0");
  refused({.lr = INFINITY}, "dp: sgd: lr is inf; expected a finite value >= 0");
  refused({.momentum = -0.9}, "dp: sgd: momentum is -0.9; expected a finite value >= 0");
  refused({.momentum = NAN}, "dp: sgd: momentum is nan; expected a finite value >= 0");
  refused({.momentum = 0.9, .dampening = NAN}, "dp: sgd: dampening is nan; expected a value in [0, 1]");
  refused({.momentum = 0.9, .dampening = -0.5}, "dp: sgd: dampening is -0.5; expected a value in [0, 1]");
  refused({.momentum = 0.9, .dampening = 1.5}, "dp: sgd: dampening is 1.5; expected a value in [0, 1]");
  refused({.weight_decay = -0.01}, "dp: sgd: weight_decay is -0.01; expected a finite value >= 0");
  refused({.weight_decay = NAN}, "dp: sgd: weight_decay is nan; expected a finite value >= 0");
  // Finite as a double, infinite as the parameters' float: one step made the weights inf.
  nn::trainer<one_float> f{one_float{}};
  CHECK_THROWS_WITH_AS(dp::optim::sgd(f, {.lr = 1e39}),
                       doctest::Contains("dp: sgd: lr is 1e+39; expected a finite value >= 0 (at most 3.40282e+38"),
                       dp::value_error);
  CHECK_THROWS_WITH_AS(dp::optim::sgd(f, {.weight_decay = 1e39}),
                       doctest::Contains("dp: sgd: weight_decay is 1e+39; expected a finite value >= 0 (at most"),
                       dp::value_error);
  CHECK_NOTHROW(dp::optim::sgd(t, {.lr = 1e39}));  // a double holds it
  refused({.momentum = 0, .nesterov = true},
          "dp: sgd: Nesterov momentum needs momentum > 0 and dampening 0, got momentum 0 and dampening 0");
  // The edges of each range are options like any other.
  CHECK_NOTHROW(dp::optim::sgd(t, {.lr = 0, .momentum = 0, .dampening = 0, .weight_decay = 0}));
  CHECK_NOTHROW(dp::optim::sgd(t, {.lr = 0.1, .momentum = 0.9, .dampening = 1}));
}

TEST_CASE("adam and adamw refuse an option outside its range, naming the optimizer, the option and the rule") {
  nn::trainer<one> t{one{}};
  const auto refused = [&](dp::optim::adam_options o, const char* what) {
    const std::string adam = std::string("dp: adam: ") + what, adamw = std::string("dp: adamw: ") + what;
    CAPTURE(what);
    CHECK_THROWS_WITH_AS(dp::optim::adam(t, o), doctest::Contains(adam.c_str()), dp::value_error);
    CHECK_THROWS_WITH_AS(dp::optim::adamw(t, o), doctest::Contains(adamw.c_str()), dp::value_error);
  };
  refused({.lr = -1e-3}, "lr is -0.001; expected a finite value >= 0");
  refused({.lr = INFINITY}, "lr is inf; expected a finite value >= 0");
  refused({.lr = NAN}, "lr is nan; expected a finite value >= 0");
  refused({.beta1 = 1}, "beta1 is 1; expected a value in [0, 1)");
  refused({.beta1 = -0.1}, "beta1 is -0.1; expected a value in [0, 1)");
  refused({.beta2 = NAN}, "beta2 is nan; expected a value in [0, 1)");
  refused({.eps = -1e-8}, "eps is -1e-08; expected a finite value > 0");
  refused({.eps = INFINITY}, "eps is inf; expected a finite value > 0 that the parameters' type holds");
  refused({.eps = 0}, "eps is 0; expected a finite value > 0");            // a zero gradient gave 0 / 0 = NaN weights
  refused({.eps = 1e-310}, "eps is 1e-310; expected a finite value > 0");  // subnormal: flushed to 0
  refused({.weight_decay = -0.01}, "weight_decay is -0.01; expected a finite value >= 0");
  refused({.weight_decay = NAN}, "weight_decay is nan; expected a finite value >= 0");
  nn::trainer<one_float> f{one_float{}};  // 1e39 is infinite as the parameters' float
  CHECK_THROWS_WITH_AS(dp::optim::adam(f, {.lr = 1e39}),
                       doctest::Contains("dp: adam: lr is 1e+39; expected a finite value >= 0 (at most 3.40282e+38"),
                       dp::value_error);
  CHECK_THROWS_WITH_AS(dp::optim::adamw(f, {.weight_decay = 1e39}),
                       doctest::Contains("dp: adamw: weight_decay is 1e+39; expected a finite value >= 0"),
                       dp::value_error);
  CHECK_THROWS_WITH_AS(dp::optim::adam(f, {.eps = 1e39}),
                       doctest::Contains("eps is 1e+39; expected a finite value > 0 that the parameters' type holds"),
                       dp::value_error);
  CHECK_NOTHROW(dp::optim::adam(t, {.lr = 0, .beta1 = 0, .beta2 = 0, .eps = 1e-300, .weight_decay = 0}));
  CHECK_NOTHROW(dp::optim::adamw(t, {.lr = 0, .beta1 = 0, .beta2 = 0, .eps = 1e-300, .weight_decay = 0}));
}

TEST_CASE(
    "schedule factories refuse a step count below 1, a factor that is negative or not finite, and a bad "
    "warm-up") {
  using namespace dp::optim;
  const auto refused = [](auto make, const char* what) {
    CAPTURE(what);
    CHECK_THROWS_WITH_AS((void)make(), doctest::Contains(what), dp::value_error);
  };
  refused([] { return step_lr(0); }, "dp: step_lr: step_size is 0; expected a step count >= 1");
  refused([] { return step_lr(-10); }, "dp: step_lr: step_size is -10; expected a step count >= 1");
  refused([] { return step_lr(1, NAN); }, "dp: step_lr: gamma is nan; expected a finite factor >= 0");
  refused([] { return step_lr(1, -2); }, "dp: step_lr: gamma is -2; expected a finite factor >= 0");
  refused([] { return step_lr(1, INFINITY); }, "dp: step_lr: gamma is inf; expected a finite factor >= 0");
  refused([] { return cosine_lr(0); }, "dp: cosine_lr: total_steps is 0; expected a step count >= 1");
  refused([] { return cosine_lr(-5); }, "dp: cosine_lr: total_steps is -5; expected a step count >= 1");
  refused([] { return cosine_lr(10, NAN); }, "dp: cosine_lr: final_factor is nan; expected a finite factor >= 0");
  refused([] { return cosine_lr(10, -0.1); }, "dp: cosine_lr: final_factor is -0.1; expected a finite factor >= 0");
  refused([] { return linear_lr(-1); }, "dp: linear_lr: total_steps is -1; expected a step count >= 1");
  refused([] { return linear_lr(1, -3); }, "dp: linear_lr: final_factor is -3; expected a finite factor >= 0");
  refused([] { return with_warmup(cosine_lr(10), -5); }, "dp: with_warmup: steps is -5; expected a step count >= 0");
  refused([] { return with_warmup(cosine_lr(10), 5, NAN); },
          "dp: with_warmup: start is nan; expected a fraction of the base rate in [0, 1]");
  refused([] { return with_warmup(cosine_lr(10), 5, -2); },
          "dp: with_warmup: start is -2; expected a fraction of the base rate in [0, 1]");
  refused([] { return with_warmup(cosine_lr(10), 5, 1.5); },
          "dp: with_warmup: start is 1.5; expected a fraction of the base rate in [0, 1]");
  // The edges are schedules: decay to 0, a single step, no warm-up, a warm-up from the full rate.
  CHECK(step_lr(1, 0).factor(1) == 0.0);
  CHECK(cosine_lr(1, 0).factor(1) == doctest::Approx(0.0));
  CHECK(linear_lr(1, 2).factor(1) == doctest::Approx(2.0));
  CHECK(with_warmup(cosine_lr(10), 0).factor(0) == doctest::Approx(1.0));
  CHECK(with_warmup(cosine_lr(10), 3, 1).factor(0) == doctest::Approx(1.0));
}

TEST_CASE("an optimizer refuses a schedule written field by field that its factory would refuse") {
  nn::trainer<one> t{one{}};
  dp::optim::lr_schedule s = dp::optim::step_lr(2, 0.5);
  s.step_size = 0;
  CHECK_THROWS_WITH_AS(dp::optim::sgd(t, {.schedule = s}),
                       doctest::Contains("dp: sgd: schedule.step_size is 0; expected a step count >= 1"),
                       dp::value_error);
  s = dp::optim::cosine_lr(10);
  s.final_factor = NAN;
  CHECK_THROWS_WITH_AS(dp::optim::adamw(t, {.schedule = s}),
                       doctest::Contains("dp: adamw: schedule.final_factor is nan; expected a finite factor >= 0"),
                       dp::value_error);
  s = dp::optim::cosine_lr(10);
  s.warmup_steps = -1;
  CHECK_THROWS_WITH_AS(dp::optim::adam(t, {.schedule = s}),
                       doctest::Contains("dp: adam: schedule.warmup_steps is -1; expected a step count >= 0"),
                       dp::value_error);
}

TEST_CASE("clip_grad_norm without a backward says so in its own words, not an optimizer's step()") {
  nn::trainer<one> t{one{}};
  std::string message;
  try {
    (void)dp::optim::clip_grad_norm(t, 1.0);
  } catch (const dp::runtime_error& e) {
    message = e.what();
  }
  CHECK(message ==
        "dp: clip_grad_norm without a backward since the last optimizer step: it scales the gradients of the trainer "
        "or dp::parallel it is given; compute them with its backward() first");
  CHECK(message.find(".step()") == std::string::npos);
  // An optimizer's own message is unchanged.
  auto opt = dp::optim::sgd(t, {.lr = 0.1});
  CHECK_THROWS_WITH_AS(opt.step(), doctest::Contains("dp: sgd.step() without a backward since the last step"),
                       dp::runtime_error);
}

TEST_CASE("clip_grad_norm refuses a max_norm that is not positive") {
  nn::trainer<one> t{one{}};
  set_grads(t, {3, 0, 4});
  CHECK_THROWS_WITH_AS((void)dp::optim::clip_grad_norm(t, 0.0),
                       doctest::Contains("dp: clip_grad_norm: max_norm is 0; expected a value > 0"), dp::value_error);
  CHECK_THROWS_WITH_AS((void)dp::optim::clip_grad_norm(t, NAN),
                       doctest::Contains("dp: clip_grad_norm: max_norm is nan; expected a value > 0"), dp::value_error);
}
