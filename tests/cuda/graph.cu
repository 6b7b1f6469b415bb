// dp::cuda_graph: a captured training step replays as the next step, bit for bit the eager one, and
// what capture cannot do is a clear error.
#include "check.hpp"

namespace nn = dp::nn;

namespace {
using mlp = nn::sequential<nn::linear<32, 64>, nn::relu, nn::linear<64, 10>>;
}  // namespace

TEST_CASE("five replays of a captured adamw step with a schedule equal five eager steps, bit for bit") {
  nn::manual_seed(7);
  const mlp model;
  const dp::device g = dp::cuda(0);
  nn::trainer<mlp> eager{model, g}, captured{model, g};
  const dp::optim::adam_options o{.lr = 1e-2, .schedule = dp::optim::cosine_lr(8)};
  auto oe = dp::optim::adamw(eager, o);
  auto oc = dp::optim::adamw(captured, o);
  auto x = dp::randn<float>({16, 32}, g, 1);
  dp::tensor<std::int64_t> y = dp::cast<std::int64_t>(dp::rand<float>({16}, g, 2) * 9.99f);
  for (int warm = 0; warm < 2; ++warm) {  // traced and cached before capture
    (void)eager.backward_async(nn::cross_entropy, x, y);
    oe.step();
    (void)captured.backward_async(nn::cross_entropy, x, y);
    oc.step();
  }
  dp::tensor<float> loss;
  dp::cuda_graph step(g, [&] {
    loss = captured.backward_async(nn::cross_entropy, x, y);
    oc.step();
  });
  CHECK(oc.steps() == 2);  // capture queues the step; it runs at replay
  for (int s = 0; s < 5; ++s) {
    const float le = eager.backward_async(nn::cross_entropy, x, y).item();
    oe.step();
    step.replay();
    CHECK(loss.item() == le);
  }
  CHECK(oc.steps() == 7);
  CHECK(oc.current_lr() == oe.current_lr());
  CHECK(dp::detail::trainer_access::flat_params(captured).to_vector() ==
        dp::detail::trainer_access::flat_params(eager).to_vector());
}

TEST_CASE("a capture that reads a result back or needs new memory is a clear error, and the stream recovers") {
  const dp::device g = dp::cuda(0);
  auto x = dp::randn<float>({1000}, g, 3);
  (void)dp::sum(x).item();  // its blocks cached: the read-back, not an allocation, is what capture meets
  dp::cuda_graph graph;
  CHECK_THROWS_WITH_AS(graph.capture(g, [&] { (void)dp::sum(x).item(); }),
                       doctest::Contains("while a CUDA graph is being captured"), dp::device_error);
  CHECK_FALSE(graph.captured());
  CHECK_THROWS_WITH_AS(graph.capture(g, [&] { (void)dp::empty<float>({777777, 3}, g); }),
                       doctest::Contains("cannot be allocated while capturing"), dp::device_error);
  CHECK_THROWS_AS(graph.replay(), dp::runtime_error);
  dp::tensor<float> y = x * 2.f;  // the stream works after both refusals
  CHECK(y.to_vector()[5] == x.to_vector()[5] * 2.f);
}

TEST_CASE("memory a graph used is not handed to tensors made while it lives") {
  const dp::device g = dp::cuda(0);
  auto x = dp::randn<float>({4096}, g, 4);
  dp::tensor<float> out = dp::empty<float>({4096}, g);
  { dp::tensor<float> warm = x * 3.f; }  // a block of this size is cached for the capture
  const void* used = nullptr;
  {
    dp::cuda_graph graph(g, [&] {
      dp::tensor<float> tmp = x * 3.f;  // takes the cached block; given back inside the capture
      used = tmp.data();
      out.assign(tmp + 1.f);
    });
    dp::tensor<float> later = dp::empty<float>({4096}, g);
    CHECK(later.data() != used);
    later.fill(-1.f);
    graph.replay();
    CHECK(later.to_vector() == std::vector<float>(4096, -1.f));  // the replay wrote its own block
    const auto xs = x.to_vector(), outs = out.to_vector();
    CHECK(outs[17] == xs[17] * 3.f + 1.f);
  }
}

// Run alone too (ctest dp_test_cuda_graph_fault): first in its process, the capture is where the
// fault status words would be made, which CUDA refuses during a capture.
TEST_CASE("a captured kernel that meets a fault flags it at every replay, raised at the next read") {
  const dp::device g = dp::cuda(0);
  auto a = dp::from_vector<std::int64_t>({6, 7, 8}).to(g);
  auto b = dp::from_vector<std::int64_t>({2, 1, 4}).to(g);
  dp::tensor<std::int64_t> q = dp::empty<std::int64_t>({3}, g);
  dp::cuda_graph graph(g, [&] { q.assign(a / b); });
  graph.replay();
  CHECK(q.to_vector() == std::vector<std::int64_t>{3, 7, 2});
  b.assign(dp::from_vector<std::int64_t>({2, 0, 4}).to(g));
  graph.replay();
  CHECK_THROWS_WITH_AS((void)q.to_vector(), doctest::Contains("integer division by zero"), dp::value_error);
  CHECK(q.to_vector() == std::vector<std::int64_t>{3, 0, 2});  // raised once
  graph.replay();
  CHECK_THROWS_AS((void)q.to_vector(), dp::value_error);  // and again at the next faulting replay
}
