// PyTorch parity: the same models, weights and batches as tests/reference/make_reference.py; logits,
// loss, gradients and the weights after three optimizer steps agree with PyTorch's to 1e-5.
#include <doctest/doctest.h>

#include <dp/dp.hpp>

#include "../support/reference.hpp"
#include "../support/reference_file.hpp"

namespace nn = dp::nn;

namespace {

const std::map<std::string, dp_test::ref_tensor>& ref() {
  static const auto r = dp_test::read_reference(DP_TEST_SOURCE_DIR "/reference/reference.txt");
  return r;
}

void close(const dp::tensor<float>& got, const std::string& name, double rel = 1e-5, double abs = 1e-6) {
  INFO(name);
  const auto& want = ref().at(name);
  dp_test::check_close(got, dp_test::ref{want.shape, want.values}, rel, abs);
}

template <class Model>
Model with_reference_weights(const std::string& prefix) {
  Model m;
  nn::for_each_parameter(
      m, [&](const std::string& name, auto& p) { p.assign(ref().at(prefix + ".init." + name).template as<float>()); });
  return m;
}

template <class Trainer>
dp::tensor<float> param(Trainer& t, const std::string& name) {
  for (const auto& e : t.layout()) {
    if (e.name == name) {
      return e.view(dp::detail::trainer_access::flat_params(t));
    }
  }
  FAIL("no parameter " << name);
  return {};
}
template <class Trainer>
dp::tensor<float> grad(Trainer& t, const std::string& name) {
  for (const auto& e : t.layout()) {
    if (e.name == name) {
      return e.view(dp::detail::trainer_access::flat_grads(t));
    }
  }
  FAIL("no parameter " << name);
  return {};
}

template <class Model, class Loss>
void check_model(const std::string& prefix, const Loss& loss) {
  const auto x = ref().at(prefix + ".input").as<float>();
  const auto y = ref().at(prefix + ".target").as<std::int64_t>();
  {
    nn::trainer<Model> t{with_reference_weights<Model>(prefix)};
    t.eval();
    close(t(x), prefix + ".logits");
    t.train();
    const float l = t.backward(loss, x, y);
    CHECK(l == doctest::Approx(ref().at(prefix + ".loss").values[0]).epsilon(1e-5));
    for (const auto& e : t.layout()) {
      close(grad(t, e.name), prefix + ".grad." + e.name, 1e-4, 1e-6);
    }
  }
  auto three_steps = [&](const std::string& name, auto make_opt) {
    nn::trainer<Model> t{with_reference_weights<Model>(prefix)};
    auto opt = make_opt(t);
    for (int i = 0; i < 3; ++i) {
      (void)t.backward(loss, x, y);
      opt.step();
    }
    for (const auto& e : t.layout()) {
      close(param(t, e.name), prefix + "." + name + "." + e.name, 1e-5, 2e-6);
    }
  };
  three_steps("sgd", [](auto& t) { return dp::optim::sgd(t, {.lr = 0.1, .momentum = 0.9}); });
  three_steps("sgd_wd_damp", [](auto& t) {
    return dp::optim::sgd(t, {.lr = 0.05, .momentum = 0.8, .dampening = 0.3, .weight_decay = 0.01});
  });
  three_steps("sgd_nesterov", [](auto& t) {
    return dp::optim::sgd(t, {.lr = 0.05, .momentum = 0.9, .nesterov = true, .weight_decay = 0.001});
  });
  three_steps("adamw", [](auto& t) { return dp::optim::adamw(t, {.lr = 1e-2, .weight_decay = 1e-2}); });
  three_steps("adam", [](auto& t) { return dp::optim::adam(t, {.lr = 1e-2, .weight_decay = 1e-3}); });
}

}  // namespace

TEST_CASE("MLP: logits, loss, gradients and three optimizer steps match PyTorch") {
  using mlp = nn::sequential<nn::linear<6, 16>, nn::relu, nn::linear<16, 12>, nn::tanh, nn::linear<12, 4>>;
  check_model<mlp>("mlp", nn::cross_entropy);
}

TEST_CASE("conv net with label smoothing: logits, loss, gradients and three optimizer steps match PyTorch") {
  using convnet =
      nn::sequential<nn::conv2d<2, 4, 3, 1, 1>, nn::relu, nn::max_pool2d<2>, nn::flatten, nn::linear<36, 3>>;
  check_model<convnet>("conv", nn::cross_entropy_loss{.label_smoothing = 0.1f});
}
