#include <filesystem>

#include <doctest/doctest.h>

#include <dp/dp.hpp>

namespace nn = dp::nn;
namespace io = dp::io;

namespace {
struct net {
  nn::linear<6, 12> fc1;
  nn::batch_norm<12> bn;
  nn::dropout drop{0.3f};
  nn::linear<12, 4> fc2;
  auto forward(auto x) const { return fc2(drop(dp::relu(bn(fc1(x))))); }
};

dp::data::tensor_dataset<float, std::int64_t> samples() {
  const auto x = dp::randn<float>({90, 6}, dp::cpu(), 21);
  dp::tensor<std::int64_t> y = dp::cast<std::int64_t>(dp::rand<float>({90}, dp::cpu(), 22) * 3.99f);
  return {x, y};
}

/// Trains for `epochs`, optionally resuming from `resume`, checkpointing to `save` at (epoch, batch).
std::vector<float> train(int epochs, const std::string& resume, const std::string& save, io::progress save_at) {
  const dp::data::loader loader{samples(), {.batch = 16, .shuffle = true, .seed = 3}};
  nn::manual_seed(resume.empty() ? 8 : 99);  // a resumed run takes weights and dropout seeds from the file
  dp::parallel<net> par{net{}, {dp::cpu(0), dp::cpu(1)}};
  auto opt = dp::optim::adamw(par, {.lr = 1e-2, .weight_decay = 1e-2, .schedule = dp::optim::cosine_lr(50)});
  io::progress start{};
  if (!resume.empty()) {
    start = io::load_checkpoint(resume, par, opt);
  }
  for (std::int64_t e = start.epoch; e < epochs; ++e) {
    const dp::index_t first = e == start.epoch ? start.batch : 0;
    dp::index_t b = first;
    for (auto [x, y] : loader.epoch(e, first)) {
      if (!save.empty() && e == save_at.epoch && b == save_at.batch) {
        io::save_checkpoint(save, par, opt, {e, b});
      }
      (void)par.backward(nn::cross_entropy, x, y);
      opt.step();
      ++b;
    }
  }
  std::vector<float> all;
  nn::for_each_tensor(par.model(), [&](const std::string&, const auto& t) {
    for (auto v : t.value().to_vector()) {
      all.push_back(static_cast<float>(v));
    }
  });
  return all;
}
}  // namespace

TEST_CASE("a run resumed from a checkpoint (mid-epoch, with dropout, batch_norm and adamw) is bitwise the same") {
  const std::string path = (std::filesystem::temp_directory_path() / "dp_test_resume.ckpt").string();
  const auto uninterrupted = train(4, "", path, {.epoch = 1, .batch = 3});
  const auto resumed = train(4, path, "", {});
  REQUIRE(uninterrupted.size() == resumed.size());
  CHECK(uninterrupted == resumed);
  // And the checkpoint did matter: starting over from scratch with 3 epochs differs.
  CHECK(train(3, "", "", {}) != uninterrupted);
  std::filesystem::remove(path);
}

TEST_CASE("a checkpoint for another optimizer or a plain weights file is refused; nothing is loaded") {
  const std::string path = (std::filesystem::temp_directory_path() / "dp_test_ckpt_kind.ckpt").string();
  nn::manual_seed(1);
  dp::parallel<net> par{net{}, {dp::cpu()}};
  auto sgd = dp::optim::sgd(par, {.lr = 0.1, .momentum = 0.9});
  io::save_checkpoint(path, par, sgd, {.epoch = 2});
  auto adam = dp::optim::adamw(par, {.lr = 1e-3});
  CHECK_THROWS_WITH_AS(io::load_checkpoint(path, par, adam), doctest::Contains("does not fit this optimizer"),
                       dp::io_error);
  io::save(path, par);
  CHECK_THROWS_WITH_AS(io::load_checkpoint(path, par, sgd), doctest::Contains("is not a dp checkpoint"), dp::io_error);
  // A model's file ignores nothing: the optimizer state in a checkpoint is "extra" to io::load.
  io::save_checkpoint(path, par, sgd, {.epoch = 2});
  CHECK_THROWS_WITH_AS(io::load(path, par), doctest::Contains("extra: optimizer."), dp::io_error);
  std::filesystem::remove(path);
}
