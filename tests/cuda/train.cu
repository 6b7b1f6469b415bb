// Training over several steps on the GPU against the host (embedding, batch_norm, adamw with a
// schedule), and bad class and embedding indices, which only a device kernel sees.
#include <cmath>

#include "check.hpp"

namespace nn = dp::nn;
using dp_cuda_test::check_same;

namespace {
// Embedding, batch_norm and a schedule: state outside plain linear layers. The relu comes before
// batch_norm: a bias feeding batch_norm directly has a gradient that is zero but for rounding (about
// 1e-8 here), and adam turns that noise into steps of the full learning rate whose sign differs
// between any two devices (the H200's first run failed on exactly those 16 weights).
struct tagger {
  nn::embedding<50, 8> emb;
  nn::flatten flat;
  nn::linear<4 * 8, 16> fc1;
  nn::batch_norm<16> bn;
  nn::linear<16, 5> fc2;
  auto forward(auto ids) const { return fc2(bn(dp::relu(fc1(flat(emb(ids)))))); }
};
}  // namespace

TEST_CASE("ten adamw steps with a schedule on the GPU follow the host's: weights, buffers and losses") {
  nn::manual_seed(3);
  const tagger model;
  nn::trainer<tagger> host{model};
  nn::trainer<tagger> gpu{model, dp::cuda(0)};
  const dp::optim::adam_options o{.lr = 1e-2, .schedule = dp::optim::with_warmup(dp::optim::cosine_lr(10), 3)};
  auto oh = dp::optim::adamw(host, o);
  auto og = dp::optim::adamw(gpu, o);
  for (int s = 0; s < 10; ++s) {
    dp::tensor<std::int64_t> ids = dp::cast<std::int64_t>(dp::rand<float>({12, 4}, dp::cpu(), 100 + s) * 49.99f);
    dp::tensor<std::int64_t> y = dp::cast<std::int64_t>(dp::rand<float>({12}, dp::cpu(), 200 + s) * 4.99f);
    const double lh = host.backward(nn::cross_entropy, ids, y);
    const double lg = gpu.backward(nn::cross_entropy, ids.to(dp::cuda(0)), y.to(dp::cuda(0)));
    CHECK(lg == doctest::Approx(lh).epsilon(1e-4));
    oh.step();
    og.step();
  }
  CHECK(og.steps() == 10);
  CHECK(og.current_lr() == oh.current_lr());
  check_same(dp::detail::trainer_access::flat_params(gpu).to_vector(),
             dp::detail::trainer_access::flat_params(host).to_vector(), 1e-4);
  const auto sh = oh.state(), sg = og.state();
  REQUIRE(sh.size() == sg.size());
  for (std::size_t i = 0; i < sh.size(); ++i) {
    check_same(sg[i].value.to_vector(), sh[i].value.to_vector(), 1e-3);
  }
}

TEST_CASE("a class index or an embedding index out of range on the GPU is an error naming the row, not garbage") {
  nn::manual_seed(4);
  nn::trainer<tagger> gpu{tagger{}, dp::cuda(0)};
  auto ids = dp::zeros<std::int64_t>({6, 4}, dp::cuda(0));
  auto y = dp::zeros<std::int64_t>({6}, dp::cuda(0));
  (void)gpu.backward(nn::cross_entropy, ids, y);  // traced with valid input
  y.slice(0, 4, 5).fill(7);
  CHECK_THROWS_WITH_AS((void)gpu.backward(nn::cross_entropy, ids, y),
                       doctest::Contains("target of row 4 is 7, outside [0, 5)"), dp::value_error);
  auto opt = dp::optim::sgd(gpu, {.lr = 0.1});
  CHECK_THROWS_AS(opt.step(), dp::runtime_error);  // that step's gradients are not used
  y.fill(0);
  ids.slice(0, 2, 3).fill(50);
  CHECK_THROWS_WITH_AS((void)gpu.backward(nn::cross_entropy, ids, y),
                       doctest::Contains("index 50 at position 8 is outside [0, 50)"), dp::value_error);
  ids.fill(0);
  CHECK(std::isfinite(gpu.backward(nn::cross_entropy, ids, y)));  // the flags were cleared
  auto logits = dp::zeros<float>({3, 5}, dp::cuda(0));
  CHECK_THROWS_WITH_AS((void)nn::cross_entropy(logits, dp::from_vector<std::int64_t>({0, -1, 2}).to(dp::cuda(0))),
                       doctest::Contains("target of row 1 is -1"), dp::value_error);
}

TEST_CASE("check_trace on the GPU: a replay gives a fresh trace's bits, and a run the same bits as without it") {
  // The check compares the two losses bit for bit, so a device whose replay differed from its trace
  // (another kernel, another reduction order) would raise it on a correct model; this is the GPU's proof.
  nn::manual_seed(5);
  const tagger model;
  nn::trainer<tagger> plain{model, dp::cuda(0)};
  nn::trainer<tagger> checked{model, dp::cuda(0)};
  checked.check_trace(true);
  auto op = dp::optim::adamw(plain, {.lr = 1e-2});
  auto oc = dp::optim::adamw(checked, {.lr = 1e-2});
  for (int s = 0; s < 6; ++s) {
    const dp::tensor<std::int64_t> ids = dp::cast<std::int64_t>(dp::rand<float>({12, 4}, dp::cpu(), 300 + s) * 49.99f);
    const dp::tensor<std::int64_t> y = dp::cast<std::int64_t>(dp::rand<float>({12}, dp::cpu(), 400 + s) * 4.99f);
    const auto di = ids.to(dp::cuda(0)), dy = y.to(dp::cuda(0));
    CHECK(checked.backward(nn::cross_entropy, di, dy) == plain.backward(nn::cross_entropy, di, dy));
    op.step();
    oc.step();
  }
  CHECK(dp::detail::trainer_access::flat_params(checked).to_vector() ==
        dp::detail::trainer_access::flat_params(plain).to_vector());
  CHECK(checked.model().bn.running_mean.value().to_vector() == plain.model().bn.running_mean.value().to_vector());
  // It reads both losses back each step, which a CUDA graph capture cannot: a clear error, not CUDA's.
  const auto di = dp::zeros<std::int64_t>({12, 4}, dp::cuda(0));
  const auto dy = dp::zeros<std::int64_t>({12}, dp::cuda(0));
  (void)checked.backward(nn::cross_entropy, di, dy);
  dp::cuda_graph graph;
  CHECK_THROWS_WITH_AS(graph.capture(dp::cuda(0), [&] { (void)checked.backward_async(nn::cross_entropy, di, dy); }),
                       doctest::Contains("dp: check_trace cannot run while a CUDA graph is captured on cuda:0"),
                       dp::device_error);
}
