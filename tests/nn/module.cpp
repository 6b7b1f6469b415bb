#include <cmath>

#include <doctest/doctest.h>

#include <dp/dp.hpp>

namespace nn = dp::nn;

namespace {
struct classifier {
  nn::linear<64, 128> fc1;
  nn::batch_norm<128> bn;
  nn::linear<128, 10> fc2;
  nn::parameter<float> scale{dp::ones<float>({10})};
  auto forward(auto x) const { return fc2(dp::relu(bn(fc1(x)))) * scale; }
};
struct outer {
  classifier inner;
  nn::sequential<nn::linear<10, 4>, nn::relu, nn::linear<4, 2>> head;
  auto forward(auto x) const { return head(inner.forward(x)); }
};
struct not_a_model {
  int x;
};
template <class X>
struct holder {
  X x;
};
struct net {
  nn::linear<4, 2> fc;
  auto forward(auto x) const { return fc(x); }
};
struct listed {  // lists its tensors itself, which hides their element type: it says it
  using value_type = double;
  nn::parameter<double> w{dp::from_vector<double>({1, 2, 3, 4, 5, 6}, {3, 2})};
  double scale = 2.0;  // a plain value forward reads: a setting
  static void dp_members(auto& self, auto&& f) { f("w", self.w); }
  static void dp_settings(auto& self, auto&& f) { f("scale", self.scale); }
  auto forward(auto x) const { return dp::matmul(x, w) * scale; }
};
struct forgets_a_value {  // the same, with scale left out of dp_settings
  using value_type = double;
  nn::parameter<double> w{dp::from_vector<double>({1, 2, 3, 4, 5, 6}, {3, 2})};
  double scale = 2.0;
  static void dp_members(auto& self, auto&& f) { f("w", self.w); }
  auto forward(auto x) const { return dp::matmul(x, w) * scale; }
};
struct built_forgetful {  // the same with a constructor: its members cannot be reflected to check
  using value_type = double;
  built_forgetful() : w{dp::from_vector<double>({1, 2, 3, 4, 5, 6}, {3, 2})} {}
  nn::parameter<double> w;
  double scale = 2.0;
  static void dp_members(auto& self, auto&& f) { f("w", self.w); }
  auto forward(auto x) const { return dp::matmul(x, w) * scale; }
};
struct holds_forgetful {
  nn::linear<3, 3, double> fc;
  forgets_a_value inner;
  auto forward(auto x) const { return inner.forward(fc(x)); }
};
}  // namespace

TEST_CASE("aggregates of modules, parameters and buffers are modules") {
  static_assert(nn::module<classifier>);
  static_assert(nn::module<outer>);
  static_assert(nn::module<nn::linear<3, 4>>);
  static_assert(!nn::module<not_a_model>);
  static_assert(!nn::module<int>);
}

TEST_CASE("a model that lists its members with dp_members trains once it names its value_type") {
  nn::trainer<listed> t{listed{}};
  static_assert(std::is_same_v<nn::trainer<listed>::value_type, double>);
  CHECK(nn::parameter_names(listed{}) == std::vector<std::string>{"w"});
  const auto x = dp::from_vector<double>({1, 0, 2, 0, 1, 1}, {2, 3});
  // out = 2 x w = [[22, 28], [16, 20]]; loss = mean(out^2) = 1924 / 4; dloss/dw = x^T out (by hand)
  CHECK(t.backward(nn::mse_loss, x, dp::zeros<double>({2, 2})) == doctest::Approx(481.0));
  CHECK(dp::detail::trainer_access::flat_grads(t).slice(0, 0, 6).to_vector() ==
        std::vector<double>{22, 28, 16, 20, 60, 76});  // (the flat buffer is padded past them)
}

TEST_CASE(
    "a plain value of a module that lists its members must be a setting, or a trainer refuses the model (check_trace "
    "finds it in one with a constructor)") {
  // Left out, a traced step keeps the value it saw: an edit to 3 would still train with 2 (and
  // dp::parallel's other replicas would keep theirs). Listed, the edit traces again.
  CHECK_THROWS_WITH_AS(nn::trainer<forgets_a_value>{forgets_a_value{}},
                       doctest::Contains("trainer<forgets_a_value>: scale (double) is a plain value of a module that "
                                         "lists its members, but dp_settings does not list it"),
                       dp::value_error);
  CHECK_THROWS_WITH_AS(nn::trainer<holds_forgetful>{holds_forgetful{}}, doctest::Contains("inner.scale (double)"),
                       dp::value_error);
  nn::trainer<listed> t{listed{}};
  const auto x = dp::from_vector<double>({1, 0, 2, 0, 1, 1}, {2, 3});
  CHECK(t.backward(nn::mse_loss, x, dp::zeros<double>({2, 2})) == doctest::Approx(481.0));  // as above
  t.edit([](listed& m) { m.scale = 3.0; });
  // out = 3 x w = [[33, 42], [24, 30]]; mean(out^2) = (1089 + 1764 + 576 + 900) / 4 (by hand)
  CHECK(t.backward(nn::mse_loss, x, dp::zeros<double>({2, 2})) == doctest::Approx(1082.25));

  // A module with a constructor is taken unchecked; check_trace finds the edit its replay missed.
  nn::trainer<built_forgetful> built{built_forgetful{}};
  built.check_trace(true);
  CHECK(built.backward(nn::mse_loss, x, dp::zeros<double>({2, 2})) == 481.0);
  built.edit([](built_forgetful& m) { m.scale = 3.0; });
  CHECK_THROWS_WITH_AS((void)built.backward(nn::mse_loss, x, dp::zeros<double>({2, 2})),
                       doctest::Contains("step 2's loss is 481 replaying the plan traced before, but 1082.25 when "
                                         "forward is traced again"),
                       dp::value_error);
}

TEST_CASE("a type's name for messages is the compiler's, without dp's build and anonymous namespaces") {
  using nn::detail::reflect::type_name;
  CHECK(type_name<float>() == "float");
  CHECK(type_name<net>() == "net");
  CHECK(type_name<nn::linear<2, 3, double>>() == "nn::linear<2, 3, double>");
  CHECK(type_name<nn::sequential<nn::linear<4, 2>, nn::relu>>() ==
        "nn::sequential<nn::linear<4, 2, float, true>, nn::relu>");
  // A name with ']' or ';' in it is whole (a parser that cut at the first ']' lost "]>").
#if defined(__clang__)
  CHECK(type_name<holder<int[2]>>() == "holder<int[2]>");
#else
  CHECK(type_name<holder<int[2]>>() == "holder<int [2]>");
#endif
}

TEST_CASE("member names nest with dots and equal PyTorch's") {
  const std::vector<std::string> want{"inner.fc1.weight", "inner.fc1.bias", "inner.bn.weight", "inner.bn.bias",
                                      "inner.fc2.weight", "inner.fc2.bias", "inner.scale",     "head.0.weight",
                                      "head.0.bias",      "head.2.weight",  "head.2.bias"};
  CHECK(nn::parameter_names(outer{}) == want);
  std::vector<std::string> buffers;
  nn::for_each_buffer(classifier{}, [&](const std::string& n, const auto&) { buffers.push_back(n); });
  CHECK(buffers == std::vector<std::string>{"bn.running_mean", "bn.running_var", "bn.num_batches_tracked"});
  CHECK(nn::parameter_count(classifier{}) == 64 * 128 + 128 + 2 * 128 + 128 * 10 + 10 + 10);
}

TEST_CASE("initialisation follows PyTorch's defaults and the seed") {
  nn::manual_seed(5);
  nn::linear<100, 50> a;
  nn::manual_seed(5);
  nn::linear<100, 50> b;
  CHECK(a.weight.value().to_vector() == b.weight.value().to_vector());
  const auto w = a.weight.value().to_vector();
  const float bound = 1 / std::sqrt(100.f);
  double mean = 0, sq = 0;
  for (float v : w) {
    CHECK(std::fabs(v) <= bound);
    mean += v;
    sq += v * v;
  }
  mean /= w.size();
  CHECK(std::fabs(mean) < 0.01 * bound);
  CHECK(sq / w.size() == doctest::Approx(bound * bound / 3).epsilon(0.05));  // U(-b, b) variance b^2 / 3
  nn::linear<100, 50> c;                                                     // the next stream: different weights
  CHECK(c.weight.value().to_vector() != a.weight.value().to_vector());
  nn::embedding<1000, 8> e;
  double esq = 0;
  for (float v : e.weight.value().to_vector()) {
    esq += v * v;
  }
  CHECK(esq / 8000 == doctest::Approx(1.0).epsilon(0.05));
}

TEST_CASE("init::uniform and init::normal refuse a bound or deviation that is negative or not finite") {
  // A NaN bound gave NaN weights, an infinite deviation -inf ones, silently.
  CHECK_THROWS_WITH_AS((void)nn::init::uniform<float>({3}, NAN),
                       doctest::Contains("dp: init::uniform: bound nan must be finite and >= 0"), dp::value_error);
  CHECK_THROWS_WITH_AS((void)nn::init::uniform<double>({3}, -1.0), doctest::Contains("bound -1"), dp::value_error);
  CHECK_THROWS_WITH_AS((void)nn::init::uniform<float>({3}, 3e38f), doctest::Contains("with a finite 2 * bound"),
                       dp::value_error);  // every value was -bound
  CHECK_THROWS_WITH_AS((void)nn::init::normal<float>({3}, INFINITY),
                       doctest::Contains("dp: init::normal: stddev inf must be finite and >= 0"), dp::value_error);
  CHECK(nn::init::uniform<float>({2}, 0.f).to_vector() == std::vector<float>{0, 0});
}

TEST_CASE("parameters copy by value; assign writes into their own storage") {
  nn::linear<2, 2> a;
  nn::linear<2, 2> b = a;
  CHECK_FALSE(b.weight.value().shares_storage(a.weight.value()));
  const float* before = a.weight.value().data();
  a.weight.assign(dp::zeros<float>({2, 2}));
  CHECK(a.weight.value().data() == before);
  CHECK(b.weight.value().to_vector() != a.weight.value().to_vector());
}

TEST_CASE("assigning a layer writes its parameters in place, so a trainer's flat buffer keeps them") {
  nn::manual_seed(1);
  nn::trainer<net> t{net{}};
  const float* before = t.model().fc.weight.value().data();
  net replacement;  // a copy of the model, edited outside the trainer, assigned back member by member
  replacement.fc.weight.assign(dp::full<float>({2, 4}, 0.5f));
  t.edit([&](net& inside) {
    inside.fc = nn::linear<4, 2>{};  // move assignment
    inside.fc = replacement.fc;      // copy assignment
  });
  CHECK(t.model().fc.weight.value().data() == before);
  CHECK(t.model().fc.weight.value().to_vector() == std::vector<float>(8, 0.5f));
  // The optimizer updates the flat buffer: the model sees every step.
  auto opt = dp::optim::sgd(t, {.lr = 0.1});
  (void)t.backward(nn::mse_loss, dp::ones<float>({3, 4}), dp::zeros<float>({3, 2}));
  opt.step();
  CHECK(t.model().fc.weight.value().to_vector() != std::vector<float>(8, 0.5f));
}

TEST_CASE("assigning a parameter or buffer of another shape, or without a value, is an error") {
  nn::parameter<float> p{dp::zeros<float>({2, 3})};
  CHECK_THROWS_WITH_AS(p = nn::parameter<float>{dp::zeros<float>({3, 2})},
                       doctest::Contains("assigning a parameter of shape {3, 2} to one of shape {2, 3}"),
                       dp::shape_error);
  CHECK_THROWS_WITH_AS(p = nn::parameter<float>{}, doctest::Contains("without a value"), dp::value_error);
  nn::buffer<float> b{dp::zeros<float>({4})};
  CHECK_THROWS_AS(b = nn::buffer<float>{dp::zeros<float>({1})}, dp::shape_error);
  nn::parameter<float> empty;
  empty = p;  // an empty parameter takes a copy
  CHECK(empty.shape() == dp::shape{2, 3});
  CHECK_FALSE(empty.value().shares_storage(p.value()));
}

TEST_CASE("sequential applies layers in order") {
  nn::sequential<nn::linear<3, 2>, nn::relu> s;
  s.get<0>().weight.assign(dp::from_vector<float>({1, 0, 0, 0, -1, 0}, {2, 3}));
  s.get<0>().bias.assign(dp::zeros<float>({2}));
  dp::tensor<float> y = s(dp::from_vector<float>({2, 5, 7}, {1, 3}));
  CHECK(y.to_vector() == std::vector<float>{2, 0});
}

TEST_CASE("sequential compares widths on the same dimension only, and names its own") {
  // A conv2d's width is its channels (dimension 1), a linear's or layer_norm's the last dimension:
  // PyTorch's Sequential(Conv2d(1, 8, 3), LayerNorm(26)) on 28 x 28 images is a valid model.
  nn::sequential<nn::conv2d<1, 8, 3>, nn::layer_norm<26>> conv_then_norm;
  CHECK(dp::tensor<float>(conv_then_norm(dp::ones<float>({2, 1, 28, 28}))).shape() == dp::shape{2, 8, 26, 26});
  // Pooling keeps the channels (batch_norm<8> after it is checked against conv2d<1, 8>'s 8), not
  // the last dimension.
  using convnet = nn::sequential<nn::conv2d<1, 8, 3>, nn::relu, nn::max_pool2d<2>, nn::batch_norm<8>, nn::flatten,
                                 nn::linear<8 * 13 * 13, 10>>;
  static_assert(convnet::in_features == 1 && convnet::in_features_axis == nn::width_axis::channel);
  static_assert(convnet::out_features == 10 && convnet::out_features_axis == nn::width_axis::last);
  using pooled_features = nn::sequential<nn::linear<4, 8>, nn::max_pool2d<2>>;
  static_assert(pooled_features::out_features == 0);  // not known: pooling halves the last dimension
  // A nested sequential gives the width its last width-setting layer gives; a residual takes its block's.
  using block = nn::sequential<nn::linear<4, 8>, nn::relu, nn::linear<8, 4>>;
  static_assert(nn::sequential<nn::sequential<nn::linear<3, 4>, nn::relu>>::out_features == 4);
  static_assert(nn::residual<block>::in_features == 4);
  // Pre-activation blocks (batch_norm first: channels, or the last dimension of [N, C]) keep their width.
  static_assert(nn::residual<nn::sequential<nn::batch_norm<16>, nn::relu, nn::conv2d<16, 16, 3, 1, 1>>>::in_features ==
                16);
  static_assert(nn::residual<nn::sequential<nn::batch_norm<4>, nn::relu, nn::linear<4, 4>>>::in_features == 4);
  nn::sequential<nn::linear<3, 4>, nn::residual<block>, nn::linear<4, 1>> net;
  CHECK(dp::tensor<float>(net(dp::ones<float>({5, 3}))).shape() == dp::shape{5, 1});
}

namespace {
struct tied {  // an encoder and a decoder sharing one matrix, listed under both names
  using value_type = float;
  nn::parameter<float> w{dp::ones<float>({2, 2})};
  static void dp_members(auto& self, auto&& f) {
    f("encoder.weight", self.w);
    f("decoder.weight", self.w);
  }
  auto forward(auto x) const { return dp::matmul(dp::matmul(x, w), w); }
};
}  // namespace

TEST_CASE("a parameter listed twice (tied weights) is refused, naming both names") {
  // It got two slots: one trained, one left at its first values, which checkpoints then stored.
  CHECK_THROWS_WITH_AS(nn::trainer<tied>{tied{}},
                       doctest::Contains("lists one parameter twice, as 'encoder.weight' and 'decoder.weight'"),
                       dp::value_error);
}
