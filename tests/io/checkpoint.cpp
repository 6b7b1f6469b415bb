#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <memory>
#include <string>
#include <sys/stat.h>
#include <thread>
#include <unistd.h>
#include <vector>

#include <doctest/doctest.h>

#include <dp/dp.hpp>

#include "../support/scratch.hpp"

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
/// `warm`: the resuming run steps once before it loads (its traced step saw its own dropout seeds).
std::vector<float> train(int epochs, const std::string& resume, const std::string& save, io::progress save_at,
                         bool warm = false) {
  const dp::data::loader loader{samples(), {.batch = 16, .shuffle = true, .seed = 3}};
  nn::manual_seed(resume.empty() ? 8 : 99);  // a resumed run takes weights and dropout seeds from the file
  dp::parallel<net> par{net{}, {dp::cpu(0), dp::cpu(1)}};
  auto opt = dp::optim::adamw(par, {.lr = 1e-2, .weight_decay = 1e-2, .schedule = dp::optim::cosine_lr(50)});
  io::progress start{};
  if (!resume.empty()) {
    if (warm) {
      const auto it = loader.epoch(0).begin();
      const auto& [x, y] = *it;
      (void)par.backward(nn::cross_entropy, x, y);
      opt.step();
    }
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
/// Writes the checkpoint at `from` again to `to`, as another tool would (CRCs made anew), with each
/// metadata value passed through change(key, value): kept when it returns true, dropped otherwise.
template <class Change>
void rewrite_checkpoint(const std::string& from, const std::string& to, Change change) {
  const io::reader r(from);
  std::vector<io::entry> entries;
  for (const auto& t : r.info().tensors) {
    const std::string_view raw = r.raw(t);
    entries.push_back({t.name, t.type, t.shape, std::vector<char>(raw.begin(), raw.end())});
  }
  std::vector<std::pair<std::string, std::string>> meta;
  for (const auto& [k, v] : r.info().metadata) {
    std::string value = v;
    if (k != "dp.crc32" && k != "dp.header_crc32" && change(k, value)) {
      meta.emplace_back(k, value);
    }
  }
  io::write(to, std::move(entries), std::move(meta));
}
}  // namespace

TEST_CASE("a run resumed from a checkpoint (mid-epoch, with dropout, batch_norm and adamw) is bitwise the same") {
  const std::string path = dp_test::scratch_path("resume.ckpt");
  const auto uninterrupted = train(4, "", path, {.epoch = 1, .batch = 3});
  const auto resumed = train(4, path, "", {});
  REQUIRE(uninterrupted.size() == resumed.size());
  CHECK(uninterrupted == resumed);
  // Loading into a run that has stepped already: its traced steps drew masks from its own seeds,
  // and the checkpoint's seeds take their place.
  CHECK(train(4, path, "", {}, true) == uninterrupted);
  // And the checkpoint did matter: starting over from scratch with 3 epochs differs.
  CHECK(train(3, "", "", {}) != uninterrupted);
  std::filesystem::remove(path);
}

TEST_CASE("a checkpoint for another optimizer or a plain weights file is refused; nothing is loaded") {
  const std::string path = dp_test::scratch_path("ckpt_kind.ckpt");
  nn::manual_seed(1);
  dp::parallel<net> par{net{}, {dp::cpu()}};
  auto sgd = dp::optim::sgd(par, {.lr = 0.1, .momentum = 0.9});
  io::save_checkpoint(path, par, sgd, {.epoch = 2});
  auto adam = dp::optim::adamw(par, {.lr = 1e-3});
  CHECK_THROWS_WITH_AS(io::load_checkpoint(path, par, adam),
                       doctest::Contains("holds the state of optimizer 'sgd', and the optimizer given is 'adamw'"),
                       dp::io_error);
  // The same optimizer made otherwise: sgd without momentum saved no momentum buffers.
  auto plain = dp::optim::sgd(par, {.lr = 0.1});
  io::save_checkpoint(path, par, plain, {.epoch = 2});
  CHECK_THROWS_WITH_AS(io::load_checkpoint(path, par, sgd),
                       doctest::Contains("had sgd momentum 0, and the optimizer given has momentum 0.9"), dp::io_error);
  // Kept on purpose, the state must still fit: the file holds no buffers to go on from.
  CHECK_THROWS_WITH_AS(io::load_checkpoint(path, par, sgd, io::changed_options::keep),
                       doctest::Contains("does not fit this optimizer: state 'fc2.bias.momentum_buffer' is missing"),
                       dp::io_error);
  io::save(path, par);
  CHECK_THROWS_WITH_AS(io::load_checkpoint(path, par, sgd), doctest::Contains("is not a dp checkpoint"), dp::io_error);
  // A model's file ignores nothing: the optimizer state in a checkpoint is "extra" to io::load.
  io::save_checkpoint(path, par, sgd, {.epoch = 2});
  CHECK_THROWS_WITH_AS(io::load(path, par), doctest::Contains("extra: optimizer."), dp::io_error);
  std::filesystem::remove(path);
}

TEST_CASE("a resume with other optimizer options is refused, naming the option and both values, unless kept") {
  const std::string path = dp_test::scratch_path("ckpt_options.ckpt");
  const std::string old_path = dp_test::scratch_path("ckpt_options_old.ckpt");
  nn::manual_seed(1);
  dp::parallel<net> par{net{}, {dp::cpu()}};
  const auto schedule = dp::optim::with_warmup(dp::optim::cosine_lr(40, 0.1), 5);
  auto saved = dp::optim::adamw(par, {.lr = 0.01, .schedule = schedule});
  const auto batch = samples().get(std::vector<dp::index_t>{0, 1, 2, 3});
  const auto weights = [&] { return par.model().fc1.weight.value().to_vector(); };
  (void)par.backward(nn::cross_entropy, batch.x, batch.y);
  saved.step();
  io::save_checkpoint(path, par, saved, {.epoch = 2});
  const auto in_file = weights();
  const auto before = io::reader(path).info();
  CHECK(*before.meta("dp.option.lr") == "0.01");
  CHECK(*before.meta("dp.option.weight_decay") == "0.01");  // adamw's default, as applied
  CHECK(*before.meta("dp.option.schedule") == "cosine");
  CHECK(*before.meta("dp.option.schedule.warmup_steps") == "5");
  CHECK(before.meta("dp.option.schedule.gamma") == nullptr);  // a field cosine does not read
  // One step more, so that the weights differ from the file's: a refused load leaves them so.
  (void)par.backward(nn::cross_entropy, batch.x, batch.y);
  saved.step();
  const auto stepped = weights();
  const auto refused = [&](dp::optim::adam_options o, const char* message) {
    auto other = dp::optim::adamw(par, o);
    CHECK_THROWS_WITH_AS(io::load_checkpoint(path, par, other), doctest::Contains(message), dp::io_error);
    CHECK(weights() == stepped);  // nothing loaded
    CHECK(other.steps() == 0);
  };
  refused({.lr = 0.001, .schedule = schedule},
          "the run that saved it had adamw lr 0.01, and the optimizer given has lr 0.001: the resumed run would not "
          "continue the saved one");
  refused({.lr = 0.01, .beta2 = 0.99, .schedule = schedule},
          "had adamw beta2 0.999, and the optimizer given has beta2 0.99");
  refused({.lr = 0.01, .weight_decay = 0.0, .schedule = schedule},
          "weight_decay 0.01, and the optimizer given has weight_decay 0");
  refused({.lr = 0.01}, "had adamw schedule cosine, and the optimizer given has schedule constant");
  refused({.lr = 0.01, .schedule = dp::optim::with_warmup(dp::optim::cosine_lr(40, 0.1), 6)},
          "schedule.warmup_steps 5, and the optimizer given has schedule.warmup_steps 6");
  // An option the optimizer given lacks: the resumed run left the warm-up out.
  refused({.lr = 0.01, .schedule = dp::optim::cosine_lr(40, 0.1)},
          "had adamw schedule.warmup_steps 5, and the optimizer given has schedule.warmup_steps (none)");
  // Kept on purpose: the new learning rate from here on, the state and step count from the file.
  auto lower = dp::optim::adamw(par, {.lr = 0.001, .schedule = schedule});
  CHECK(io::load_checkpoint(path, par, lower, io::changed_options::keep).epoch == 2);
  CHECK(weights() == in_file);
  CHECK(lower.steps() == 1);
  CHECK(lower.current_lr() == doctest::Approx(0.001 / 5));  // step 1 of the warm-up from 0, at the new lr
  // The same options load.
  auto same = dp::optim::adamw(par, {.lr = 0.01, .schedule = schedule});
  CHECK(io::load_checkpoint(path, par, same).epoch == 2);
  // A checkpoint written before options were stored loads with the optimizer's own.
  rewrite_checkpoint(path, old_path, [](const std::string& key, std::string&) {
    return key.rfind("dp.option.", 0) != 0 && key != "dp.options";
  });
  auto any = dp::optim::adamw(par, {.lr = 0.5});
  CHECK(io::load_checkpoint(old_path, par, any).epoch == 2);
  // SGD's options, its schedule's fields among them: counts as whole numbers, -0 as 0.
  const auto nesterov_sgd = [&](double weight_decay, double gamma, bool nesterov) {
    return dp::optim::sgd(par, {.lr = 0.1,
                                .momentum = 0.9,
                                .nesterov = nesterov,
                                .weight_decay = weight_decay,
                                .schedule = dp::optim::step_lr(100000, gamma)});
  };
  auto with_nesterov = nesterov_sgd(-0.0, 0.1, true);
  io::save_checkpoint(path, par, with_nesterov);
  CHECK(*io::reader(path).info().meta("dp.option.schedule.step_size") == "100000");
  CHECK(*io::reader(path).info().meta("dp.option.weight_decay") == "0");
  auto zero = nesterov_sgd(0.0, 0.1, true);
  CHECK(io::load_checkpoint(path, par, zero).epoch == 0);
  auto plain = nesterov_sgd(0.0, 0.1, false);
  CHECK_THROWS_WITH_AS(io::load_checkpoint(path, par, plain),
                       doctest::Contains("had sgd nesterov true, and the optimizer given has nesterov false"),
                       dp::io_error);
  auto other_gamma = nesterov_sgd(0.0, 0.5, true);
  CHECK_THROWS_WITH_AS(io::load_checkpoint(path, par, other_gamma),
                       doctest::Contains("had sgd schedule.gamma 0.1, and the optimizer given has schedule.gamma 0.5"),
                       dp::io_error);
  // Without momentum the optimizer keeps no buffers: named as the option, not as file entries the
  // model lacks ("does not fit this model ... extra: optimizer.fc1.weight.momentum_buffer").
  auto no_momentum = dp::optim::sgd(par, {.lr = 0.1, .schedule = dp::optim::step_lr(100000, 0.1)});
  CHECK_THROWS_WITH_AS(io::load_checkpoint(path, par, no_momentum),
                       doctest::Contains("had sgd momentum 0.9, and the optimizer given has momentum 0"), dp::io_error);
  std::filesystem::remove(path);
  std::filesystem::remove(old_path);
}

namespace {
struct net_without_dropout {  // net's parameters and buffers, without its dropout
  nn::linear<6, 12> fc1;
  nn::batch_norm<12> bn;
  nn::linear<12, 4> fc2;
  auto forward(auto x) const { return fc2(dp::relu(bn(fc1(x)))); }
};
}  // namespace

TEST_CASE("a checkpoint of a model without a random module says so, not that it is no checkpoint") {
  const std::string path = dp_test::scratch_path("ckpt_no_seed.ckpt");
  nn::manual_seed(1);
  dp::parallel<net_without_dropout> plain{net_without_dropout{}, {dp::cpu()}};
  auto plain_opt = dp::optim::sgd(plain, {.lr = 0.1});
  io::save_checkpoint(path, plain, plain_opt, {.epoch = 1});
  dp::parallel<net> par{net{}, {dp::cpu()}};
  auto opt = dp::optim::sgd(par, {.lr = 0.1});
  // It said "is not a dp checkpoint (no dp.seed.2 in its metadata)".
  CHECK_THROWS_WITH_AS(io::load_checkpoint(path, par, opt),
                       doctest::Contains("does not fit this model: it holds no seed for the random module 'drop'"),
                       dp::io_error);
  std::filesystem::remove(path);
}

TEST_CASE("Adam's checkpoint is refused by AdamW and the other way round, though their state has the same names") {
  const std::string path = dp_test::scratch_path("ckpt_adam.ckpt");
  const std::string old_path = dp_test::scratch_path("ckpt_adam_old.ckpt");
  nn::manual_seed(1);
  dp::parallel<net> par{net{}, {dp::cpu()}};
  auto adam = dp::optim::adam(par, {.lr = 1e-3});
  auto adamw = dp::optim::adamw(par, {.lr = 1e-3});
  io::save_checkpoint(path, par, adam, {.epoch = 1});
  // AdamW would decay the weights that Adam's moments were never meant to: another run, silently.
  CHECK_THROWS_WITH_AS(io::load_checkpoint(path, par, adamw),
                       doctest::Contains("holds the state of optimizer 'adam', and the optimizer given is 'adamw'"),
                       dp::io_error);
  io::save_checkpoint(path, par, adamw, {.epoch = 1});
  // One step after the save, so that a load would show in the weights.
  const dp::data::loader loader{samples(), {.batch = 16}};
  const auto it = loader.epoch(0).begin();
  const auto& [x, y] = *it;
  (void)par.backward(nn::cross_entropy, x, y);
  adamw.step();
  const auto before = par.model().fc1.weight.value().to_vector();
  CHECK_THROWS_WITH_AS(io::load_checkpoint(path, par, adam),
                       doctest::Contains("optimizer 'adamw', and the optimizer given is 'adam'"), dp::io_error);
  CHECK(par.model().fc1.weight.value().to_vector() == before);
  CHECK(io::load_checkpoint(path, par, adamw).epoch == 1);
  CHECK(par.model().fc1.weight.value().to_vector() != before);
  // A checkpoint written before the optimizer's name (and options) were stored still loads.
  rewrite_checkpoint(path, old_path, [](const std::string& k, std::string&) {
    return k != "dp.optimizer" && k.rfind("dp.option", 0) != 0;
  });
  CHECK(io::load_checkpoint(old_path, par, adam).epoch == 1);
  std::filesystem::remove(path);
  std::filesystem::remove(old_path);
}

TEST_CASE("a checkpoint's metadata is covered by a CRC and read strictly: a flipped or edited number is refused") {
  const std::string path = dp_test::scratch_path("ckpt_meta.ckpt");
  nn::manual_seed(1);
  dp::parallel<net> par{net{}, {dp::cpu()}};
  auto opt = dp::optim::sgd(par, {.lr = 0.1});
  io::save_checkpoint(path, par, opt, {.epoch = 3});
  const std::string bytes = dp_test::bytes_of(path);
  auto load_bytes = [&](const std::string& b) {
    { std::ofstream(path, std::ios::binary) << b; }
    return io::load_checkpoint(path, par, opt);
  };
  // "dp.epoch":"3" -> "dp.epoch":"7": the same length, valid JSON, caught by the header's CRC.
  std::string edited = bytes;
  const auto at = edited.find("\"dp.epoch\":\"3\"");
  REQUIRE(at != std::string::npos);
  edited[at + 12] = '7';
  CHECK_THROWS_WITH_AS(load_bytes(edited), doctest::Contains("the header is corrupt"), dp::io_error);
  CHECK(load_bytes(bytes).epoch == 3);

  // A file whose numbers are malformed but whose CRCs agree (written by another tool): read strictly.
  const std::string bad_path = path + ".rewritten";
  for (const char* bad : {"-3", "3abc", "", "99999999999999999999"}) {
    CAPTURE(bad);
    rewrite_checkpoint(path, bad_path, [&](const std::string& k, std::string& v) {
      v = k == "dp.epoch" ? std::string(bad) : v;
      return true;
    });
    CHECK_THROWS_WITH_AS(io::load_checkpoint(bad_path, par, opt), doctest::Contains("is not a whole number"),
                         dp::io_error);
  }
  // An optimizer step count load_state refuses (2^53) is refused before the weights are written.
  rewrite_checkpoint(path, bad_path, [&](const std::string& k, std::string& v) {
    v = k == "dp.optimizer_steps" ? std::string("9007199254740992") : v;
    return true;
  });
  const auto before = par.model().fc1.weight.value().to_vector();
  dp::parallel<net> other{net{}, {dp::cpu()}};  // different weights from the checkpoint's
  auto other_opt = dp::optim::sgd(other, {.lr = 0.1});
  const auto other_before = other.model().fc1.weight.value().to_vector();
  REQUIRE(other_before != before);
  CHECK_THROWS_WITH_AS(io::load_checkpoint(bad_path, other, other_opt), doctest::Contains("dp.optimizer_steps"),
                       dp::io_error);
  CHECK(other.model().fc1.weight.value().to_vector() == other_before);
  std::filesystem::remove(path);
  std::filesystem::remove(bad_path);
}

TEST_CASE("a checkpoint whose CRC keys were deleted or renamed is refused, naming the key; nothing is loaded") {
  const std::string path = dp_test::scratch_path("ckpt_no_crc.ckpt");
  nn::manual_seed(1);
  dp::parallel<net> par{net{}, {dp::cpu()}};
  auto opt = dp::optim::sgd(par, {.lr = 0.1});
  io::save_checkpoint(path, par, opt, {.epoch = 3});
  const std::string bytes = dp_test::bytes_of(path);
  dp::parallel<net> other{net{}, {dp::cpu()}};  // different weights from the checkpoint's
  auto other_opt = dp::optim::sgd(other, {.lr = 0.1});
  const auto other_before = other.model().fc1.weight.value().to_vector();
  const auto load_bytes = [&](const std::string& b) {
    { std::ofstream(path, std::ios::binary) << b; }
    return io::load_checkpoint(path, other, other_opt);
  };
  // The pair `,"key":"value"` blanked to spaces, which JSON allows between values: the key deleted,
  // the header's length and everything else unchanged.
  const auto without = [&](const std::string& key) {
    std::string b = bytes;
    const auto at = b.find(",\"" + key + "\":\"");
    REQUIRE(at != std::string::npos);
    const auto end = b.find('"', at + key.size() + 5);  // the value's closing quote
    std::fill(b.begin() + static_cast<std::ptrdiff_t>(at), b.begin() + static_cast<std::ptrdiff_t>(end) + 1, ' ');
    return b;
  };
  for (const std::string key : {"dp.header_crc32", "dp.crc32"}) {
    CAPTURE(key);
    const std::string refused = "is a damaged or edited dp checkpoint: its metadata holds no " + key;
    CHECK_THROWS_WITH_AS(load_bytes(without(key)), doctest::Contains(refused.c_str()), dp::io_error);
    std::string renamed = bytes;  // "dp.crc32" -> "dp.crc3X": no longer the key verify looks for
    const auto at = renamed.find("\"" + key + "\"");
    REQUIRE(at != std::string::npos);
    renamed[at + key.size()] = 'X';
    CHECK_THROWS_WITH_AS(load_bytes(renamed), doctest::Contains(refused.c_str()), dp::io_error);
  }
  // What the data CRC's deletion would hide: a changed weight, loaded without a word.
  std::string edited = without("dp.crc32");
  edited.back() ^= 1;
  CHECK_THROWS_WITH_AS(load_bytes(edited), doctest::Contains("its metadata holds no dp.crc32"), dp::io_error);
  CHECK(other.model().fc1.weight.value().to_vector() == other_before);
  CHECK(load_bytes(bytes).epoch == 3);  // the file as written loads
  CHECK(other.model().fc1.weight.value().to_vector() == par.model().fc1.weight.value().to_vector());
  // A checkpoint as dp 0.1.0 wrote it (no header CRC, and none of the keys added since) still loads,
  // its data verified; one with a changed weight is refused by the data CRC.
  std::string old = bytes;
  const auto blank = [&](const std::string& key, bool prefix) {
    for (auto at = old.find(",\"" + key); at != std::string::npos; at = old.find(",\"" + key, at + 1)) {
      if (!prefix && old[at + 2 + key.size()] != '"') {
        continue;  // dp.optimizer_steps, which 0.1.0 wrote, is not dp.optimizer
      }
      const auto value = old.find("\":\"", at + 2);
      const auto end = old.find('"', value + 3);
      std::fill(old.begin() + static_cast<std::ptrdiff_t>(at), old.begin() + static_cast<std::ptrdiff_t>(end) + 1, ' ');
    }
  };
  for (const char* key : {"dp.header_crc32", "dp.optimizer", "dp.settings", "dp.recipe"}) {
    blank(key, false);
  }
  blank("dp.setting.", true);
  // Any key 0.1.0 did not write marks a later file, whose header CRC is required: deleting the header
  // CRC and the three best-known later keys left an edited epoch or option to load unverified.
  const std::string later = old;
  CHECK_THROWS_WITH_AS(load_bytes(later), doctest::Contains("its metadata holds no dp.header_crc32"), dp::io_error);
  blank("dp.option", true);  // dp.option.<name> and dp.options
  REQUIRE(old.find("dp.header_crc32") == std::string::npos);
  REQUIRE(old.find("dp.option") == std::string::npos);
  REQUIRE(old.find("dp.optimizer_steps") != std::string::npos);
  CHECK(load_bytes(old).epoch == 3);
  old.back() ^= 1;
  CHECK_THROWS_WITH_AS(load_bytes(old), doctest::Contains("CRC"), dp::io_error);
  std::filesystem::remove(path);
}

TEST_CASE("a checkpoint keeps the module settings an edit changed; one written before settings were kept loads") {
  const std::string path = dp_test::scratch_path("ckpt_settings.ckpt");
  const auto x = dp::randn<float>({8, 6}, dp::cpu(), 31);
  const dp::tensor<std::int64_t> y = dp::cast<std::int64_t>(dp::rand<float>({8}, dp::cpu(), 32) * 3.99f);
  nn::manual_seed(1);
  dp::parallel<net> par{net{}, {dp::cpu(0), dp::cpu(1)}};
  auto opt = dp::optim::sgd(par, {.lr = 0.1});
  par.edit([](net& m) {  // a schedule's change while training: built with 0.3 and 0.1
    m.drop.p = 0.125f;
    m.bn.momentum = 0.25f;
  });
  io::save_checkpoint(path, par, opt, {.epoch = 1});
  // A fresh run (other weights, seeds and settings) loads the checkpoint: every replica continues
  // as the saved run does, with its p and momentum.
  const auto fresh_run = [&](const std::string& file) {
    nn::manual_seed(2);
    auto fresh = std::make_unique<dp::parallel<net>>(net{}, std::vector<dp::device>{dp::cpu(0), dp::cpu(1)});
    auto fresh_opt = dp::optim::sgd(*fresh, {.lr = 0.1});
    (void)io::load_checkpoint(file, *fresh, fresh_opt);
    return fresh;
  };
  const auto resumed = fresh_run(path);
  CHECK(resumed->model().drop.p == 0.125f);
  CHECK(resumed->model().bn.momentum == 0.25f);
  CHECK(resumed->backward(nn::cross_entropy, x, y) == par.backward(nn::cross_entropy, x, y));
  CHECK(resumed->model().bn.running_mean.value().to_vector() == par.model().bn.running_mean.value().to_vector());

  // The same file rewritten by hand, as another tool would.
  const auto rewrite = [&](auto change) {
    const std::string other = path + ".rewritten";
    rewrite_checkpoint(path, other, change);
    return other;
  };
  // Written before settings were kept: loads, and the model keeps its own (built with 0.3).
  const std::string old = rewrite([](const std::string& k, std::string&) { return k.rfind("dp.setting", 0) != 0; });
  CHECK(fresh_run(old)->model().drop.p == 0.3f);
  // A setting missing, a count that differs, bits wider than the setting's type: refused.
  CHECK_THROWS_WITH_AS(fresh_run(rewrite([](const std::string& k, std::string&) { return k != "dp.setting.drop.p"; })),
                       doctest::Contains("does not fit this model: it holds no setting 'drop.p'"), dp::io_error);
  CHECK_THROWS_WITH_AS(fresh_run(rewrite([](const std::string& k, std::string& v) {
                         v = k == "dp.settings" ? "5" : v;
                         return true;
                       })),
                       doctest::Contains("it holds 5 module settings, the model 4"), dp::io_error);
  CHECK_THROWS_WITH_AS(
      fresh_run(rewrite([](const std::string& k, std::string& v) {
        v = k == "dp.setting.drop.p" ? "4294967296" : v;
        return true;
      })),
      doctest::Contains("metadata dp.setting.drop.p = '4294967296' is not a whole number in [0, 4294967295]"),
      dp::io_error);
  std::filesystem::remove(path);
  std::filesystem::remove(path + ".rewritten");
}

TEST_CASE("save_checkpoint refuses progress load_checkpoint would refuse, before anything is written") {
  const std::string path = dp_test::scratch_path("ckpt_progress.ckpt");
  std::filesystem::remove(path);
  nn::manual_seed(1);
  dp::parallel<net> par{net{}, {dp::cpu()}};
  auto opt = dp::optim::sgd(par, {.lr = 0.1});
  CHECK_THROWS_WITH_AS(io::save_checkpoint(path, par, opt, {.epoch = -1}),
                       doctest::Contains("progress.epoch is -1, but an epoch is a whole number from 0"),
                       dp::value_error);
  CHECK_THROWS_WITH_AS(io::save_checkpoint(path, par, opt, {.epoch = 2, .batch = -5}),
                       doctest::Contains("progress.batch is -5, but a batch is a whole number from 0"),
                       dp::value_error);
  CHECK_THROWS_WITH_AS(io::save_checkpoint(path, par, opt, {.recipe = std::string(io::max_header_bytes, 'x')}),
                       doctest::Contains("progress.recipe is 100000000 bytes, but it is stored in the file's header, "
                                         "which readers take up to 100000000 bytes"),
                       dp::value_error);
  // Refused before anything is written, naming the field (not deep in the writer).
  CHECK_THROWS_WITH_AS(io::save_checkpoint(path, par, opt, {.recipe = "lr=0.1 caf\xe9"}),
                       doctest::Contains("progress.recipe is not valid UTF-8 at byte 10"), dp::value_error);
  // Mid-accumulation: the gradients a checkpoint does not store would be lost on resume.
  auto x = dp::randn<float>({4, 6}, dp::cpu(), 1);
  dp::tensor<std::int64_t> y = dp::zeros<std::int64_t>({4});
  (void)par.backward(nn::cross_entropy, x, y, dp::no_sync);
  CHECK_THROWS_WITH_AS(io::save_checkpoint(path, par, opt), doctest::Contains("gradients are being accumulated"),
                       dp::value_error);
  CHECK_FALSE(std::filesystem::exists(path));
  // Between backward and step: the file would hold the step count and batch statistics of a batch
  // whose gradients it drops, so the resumed run would train on that batch again, counting it twice.
  (void)par.backward(nn::cross_entropy, x, y);
  CHECK_THROWS_WITH_AS(io::save_checkpoint(path, par, opt), doctest::Contains("wait for the optimizer's step"),
                       dp::value_error);
  CHECK_FALSE(std::filesystem::exists(path));
  opt.step();
  io::save_checkpoint(path, par, opt, {.epoch = 0, .batch = 0, .recipe = "batch=16"});
  const io::progress back = io::load_checkpoint(path, par, opt);
  CHECK(back.epoch == 0);
  CHECK(back.recipe == "batch=16");
  std::filesystem::remove(path);
}

TEST_CASE("save_checkpoint refuses optimizer state load_checkpoint would refuse (an overflowed moment)") {
  // A gradient of 1e21 squares past float's range: Adam's exp_avg_sq is inf, the step itself is 0
  // (m / sqrt(inf)) and the weights stay finite, so the run goes on; its checkpoint would not load.
  const std::string path = dp_test::scratch_path("ckpt_overflowed.ckpt");
  std::filesystem::remove(path);
  nn::manual_seed(1);
  nn::trainer<net> t{net{}};
  auto opt = dp::optim::adam(t, {.lr = 1e-3});
  dp::tensor<float> g(dp::detail::trainer_access::flat_grads(t));
  const dp::index_t n = g.shape()[0];
  g.slice(0, 0, n) = dp::from_vector<float>(std::vector<float>(static_cast<std::size_t>(n), 1e21f));
  dp::detail::replica_access::set_gradients(t, nn::grad_state::complete);
  opt.step();
  for (const float w : dp::detail::trainer_access::flat_params(t).to_vector()) {
    REQUIRE(std::isfinite(w));
  }
  // The first tensor in the optimizer's state order names itself (every exp_avg_sq overflowed).
  std::string said;
  try {
    io::save_checkpoint(path, t, opt);
  } catch (const dp::value_error& e) {
    said = e.what();
  }
  CHECK(said.starts_with("dp: save_checkpoint(" + path + "): 'optimizer."));
  CHECK(said.find(".exp_avg_sq' holds inf at element 0; load_checkpoint takes finite optimizer state only") !=
        std::string::npos);
  CHECK_FALSE(std::filesystem::exists(path));
  // Such a file (written before save checked it, or edited with its CRCs made anew) is refused on
  // load, naming the file and the tensor; nothing is loaded.
  opt.load_state(0, [&] {
    auto s = opt.state();
    for (auto& e : s) {
      e.value.fill(0.f);
    }
    return s;
  }());
  io::save_checkpoint(path, t, opt);
  const io::reader r(path);
  std::vector<io::entry> entries;
  for (const auto& e : r.info().tensors) {
    const std::string_view raw = r.raw(e);
    std::vector<char> bytes(raw.begin(), raw.end());
    if (e.name == "optimizer.fc1.bias.exp_avg_sq") {
      const float inf = std::numeric_limits<float>::infinity();
      std::memcpy(bytes.data(), &inf, sizeof inf);
    }
    entries.push_back({e.name, e.type, e.shape, bytes});
  }
  std::vector<std::pair<std::string, std::string>> meta;
  for (const auto& [k, v] : r.info().metadata) {
    if (k != "dp.crc32" && k != "dp.header_crc32") {
      meta.emplace_back(k, v);
    }
  }
  io::write(path, std::move(entries), std::move(meta));
  const auto before = t.model().fc1.bias.value().to_vector();
  const std::string refused =
      "dp: load_checkpoint(" + path + "): adam: load_state: 'fc1.bias.exp_avg_sq' holds inf at element 0";
  CHECK_THROWS_WITH_AS(io::load_checkpoint(path, t, opt), doctest::Contains(refused.c_str()), dp::value_error);
  CHECK(t.model().fc1.bias.value().to_vector() == before);
  std::filesystem::remove(path);
}

TEST_CASE("a checkpoint pairs a trainer only with the optimizer made from it, on save and on load") {
  const std::string path = dp_test::scratch_path("ckpt_pair.ckpt");
  std::filesystem::remove(path);
  nn::manual_seed(1);
  nn::trainer<net> a{net{}}, b{net{}};
  auto oa = dp::optim::sgd(a, {.lr = 0.1, .momentum = 0.9});
  auto ob = dp::optim::sgd(b, {.lr = 0.1, .momentum = 0.9});
  CHECK_THROWS_WITH_AS(io::save_checkpoint(path, a, ob),
                       doctest::Contains(("save_checkpoint(" + path +
                                          "): the optimizer was made from another trainer or dp::parallel than the "
                                          "one given")
                                             .c_str()),
                       dp::value_error);
  CHECK_FALSE(std::filesystem::exists(path));
  io::save_checkpoint(path, a, oa);
  CHECK_THROWS_WITH_AS(
      io::load_checkpoint(path, a, ob),
      doctest::Contains(("load_checkpoint(" + path + "): the optimizer was made from another").c_str()),
      dp::value_error);
  // Another kind of owner (a dp::parallel's optimizer with a trainer) is the same error.
  dp::parallel<net> par{net{}, {dp::cpu()}};
  auto op = dp::optim::sgd(par, {.lr = 0.1});
  CHECK_THROWS_AS(io::save_checkpoint(path, a, op), dp::value_error);
  CHECK_NOTHROW((void)io::load_checkpoint(path, a, oa));
  std::filesystem::remove(path);
}

TEST_CASE("a temporary's host tag is the FNV-1a hash of the host name, 16 hex digits") {
  CHECK(dp::detail::fnv1a("a") == 0xaf63dc4c8601ec8cull);  // the published FNV-1a 64 test vectors
  CHECK(dp::detail::fnv1a("foobar") == 0x85944171f73967e8ull);
  char host[256] = {};
  REQUIRE(::gethostname(host, sizeof host - 1) == 0);
  char text[17];
  std::snprintf(text, sizeof text, "%016llx", static_cast<unsigned long long>(dp::detail::fnv1a(host)));
  CHECK(dp::detail::host_tag() == text);
}

TEST_CASE("temporaries left by a writer killed mid-save are removed by the next save; a live writer's are kept") {
  const auto dir = std::filesystem::path(dp_test::scratch_path("stale"));
  std::filesystem::create_directories(dir);
  const std::string path = (dir / "run.ckpt").string();
  const std::string here = ".tmp." + dp::detail::host_tag() + ".";
  const std::string dead = path + here + "999999999.0";  // beyond any pid_max: no such process
  const std::string alive = path + here + "1.0";         // pid 1 always runs
  const std::string other =
      (dir / ("other.ckpt" + here + "999999999.0")).string();  // another file's: not ours to judge
  // Another host's writer, saving into a shared folder: its pid means nothing here (this removed it).
  const std::string remote = path + ".tmp.0123456789abcdef.999999999.0";
  const std::string before_hosts = path + ".tmp.999999999.1";  // named by dp before names carried the host
  for (const auto& f : {dead, alive, other, remote, before_hosts}) {
    std::ofstream(f) << "partial";
  }
  nn::manual_seed(1);
  dp::parallel<net> par{net{}, {dp::cpu()}};
  auto opt = dp::optim::sgd(par, {.lr = 0.1});
  io::save_checkpoint(path, par, opt, {.epoch = 1});
  CHECK_FALSE(std::filesystem::exists(dead));
  CHECK(std::filesystem::exists(alive));
  CHECK(std::filesystem::exists(other));
  CHECK(std::filesystem::exists(remote));
  CHECK_FALSE(std::filesystem::exists(before_hosts));
  std::filesystem::remove_all(dir);
}

TEST_CASE("a link planted where the writer puts its temporary is passed over, and its target is left alone") {
  const auto dir = std::filesystem::path(dp_test::scratch_path("planted"));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  const std::string path = (dir / "run.ckpt").string(), victim = (dir / "victim").string();
  std::ofstream(victim) << "keep me";
  // The temporary's name is `path.tmp.<host>.<pid>.<n>` with a process-wide counter n: every name
  // this binary's next writes try (it makes far fewer than 5000 files).
  for (int n = 0; n < 5000; ++n) {
    std::filesystem::create_symlink(
        victim, path + ".tmp." + dp::detail::host_tag() + "." + std::to_string(::getpid()) + "." + std::to_string(n));
  }
  nn::manual_seed(1);
  dp::parallel<net> par{net{}, {dp::cpu()}};
  auto opt = dp::optim::sgd(par, {.lr = 0.1});
  io::save_checkpoint(path, par, opt, {.epoch = 2});
  std::string kept;
  std::getline(std::ifstream(victim), kept);
  CHECK(kept == "keep me");  // it was truncated and overwritten through the link before
  CHECK(std::filesystem::is_regular_file(std::filesystem::symlink_status(path)));
  CHECK(io::load_checkpoint(path, par, opt).epoch == 2);
  std::filesystem::remove_all(dir);
}

TEST_CASE("a directory, a device or a missing file as a checkpoint path is a dp error with the OS's reason") {
  nn::manual_seed(1);
  dp::parallel<net> par{net{}, {dp::cpu()}};
  auto opt = dp::optim::sgd(par, {.lr = 0.1});
  const std::string dir = std::filesystem::temp_directory_path().string();
  CHECK_THROWS_WITH_AS(io::load_checkpoint(dir, par, opt), doctest::Contains("Is a directory"), dp::io_error);
  CHECK_THROWS_WITH_AS(io::load_checkpoint("/dev/zero", par, opt), doctest::Contains("not a regular file"),
                       dp::io_error);
  CHECK_THROWS_WITH_AS(io::load_checkpoint(dir + "/dp_no_such.ckpt", par, opt),
                       doctest::Contains("No such file or directory"), dp::io_error);
  // A file whose size the OS does not know ahead (procfs says 0) is held to the limit as it is read:
  // the last, short read went unchecked (1401 bytes came back under a limit of 10).
  CHECK_THROWS_WITH_AS((void)dp::detail::read_bytes("/proc/self/status", 10),
                       doctest::Contains("'/proc/self/status' is larger than 10 bytes"), dp::io_error);
}

TEST_CASE("a file larger than the machine's memory is refused before a byte is read, naming it and both sizes") {
  // A sparse file: its size on disk is one block. Read, it was reserved whole (std::bad_alloc, no
  // file named) or, where the OS promises more memory than it has, read as zeros until killed. One
  // byte past the machine's memory (what free(1) calls total) is past a container's limit too.
  const auto memory =
      static_cast<std::uint64_t>(::sysconf(_SC_PHYS_PAGES)) * static_cast<std::uint64_t>(::sysconf(_SC_PAGE_SIZE));
  REQUIRE(memory > 0);
  REQUIRE(memory + 4096 < (std::uint64_t{1} << 40));  // under the reader's own limit, which is checked first
  const std::string path = dp_test::scratch_path("larger_than_memory.safetensors");
  { std::ofstream(path, std::ios::binary) << "x"; }
  REQUIRE(::truncate(path.c_str(), static_cast<off_t>(memory + 4096)) == 0);
  nn::manual_seed(1);
  dp::parallel<net> par{net{}, {dp::cpu()}};
  auto opt = dp::optim::sgd(par, {.lr = 0.1});
  const std::string want =
      "'" + path + "' is " + std::to_string(memory + 4096) + " bytes, more than the memory this process may use (";
  CHECK_THROWS_WITH_AS(io::load_checkpoint(path, par, opt), doctest::Contains(want.c_str()), dp::io_error);
  CHECK_THROWS_WITH_AS(io::load(path, par), doctest::Contains(want.c_str()), dp::io_error);
  std::filesystem::remove(path);
}

TEST_CASE("read_bytes holds a regular file in one allocation of its size; a file of unknown size is read to its end") {
  const std::string path = dp_test::scratch_path("read_bytes.bin");
  std::string content((std::size_t{1} << 20) + 1, '\0');  // 1 MiB and a byte: 17 reads of at most 64 KiB
  for (std::size_t i = 0; i < content.size(); ++i) {
    content[i] = static_cast<char>(i * 7 % 251);
  }
  { std::ofstream(path, std::ios::binary) << content; }
  const std::string bytes = dp::detail::read_bytes(path);
  CHECK(bytes == content);
  // Grown by appending, the string doubled to 2 MiB (peaking at twice the file, copied at each step).
  CHECK(bytes.capacity() < content.size() + content.size() / 2);
  std::filesystem::remove(path);
  // procfs says size 0: nothing is reserved, and the whole text still comes back.
  const std::string status = dp::detail::read_bytes("/proc/self/status");
  CHECK(status.rfind("Name:", 0) == 0);
  CHECK(status.back() == '\n');
}

TEST_CASE("a pipe read whole grows up to its limit, never to twice it; one byte more is refused naming the limit") {
  // A stream of unknown size grows by copying. Doubling took 200000 bytes to a capacity of 262144
  // (and the copy's peak to 393216): near the memory this process may use, past it.
  const std::string fifo = dp_test::scratch_path("growing.fifo");
  std::filesystem::remove(fifo);
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  const std::string content(200000, 'x');
  auto write_all = [&](std::size_t n) {
    return std::thread([&fifo, &content, n] {
      const int fd = ::open(fifo.c_str(), O_WRONLY | O_CLOEXEC);  // waits for the reader
      if (fd >= 0) {
        for (std::size_t at = 0; at < n;) {
          const ssize_t w = ::write(fd, content.data() + at, n - at);
          if (w <= 0) {
            break;  // the reader stopped (its limit): EPIPE
          }
          at += static_cast<std::size_t>(w);
        }
        ::close(fd);
      }
    });
  };
  struct sigaction ignore {
  }, old{};
  ignore.sa_handler = SIG_IGN;
  ::sigaction(SIGPIPE, &ignore, &old);
  std::thread writer = write_all(content.size());
  const std::string got = dp::detail::read_bytes(fifo, content.size());
  writer.join();
  CHECK(got == content);
  CHECK(got.capacity() <= content.size());
  writer = write_all(content.size());
  CHECK_THROWS_WITH_AS((void)dp::detail::read_bytes(fifo, content.size() - 1),
                       doctest::Contains("is larger than 199999 bytes"), dp::io_error);
  writer.join();
  ::sigaction(SIGPIPE, &old, nullptr);
  std::filesystem::remove(fifo);
}
