// The training loop the examples share: epochs of dp::parallel steps with a progress bar,
// checkpoints after every epoch, resuming, and the test accuracy.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <sstream>
#include <string>

#include <dp/dp.hpp>

#include "progress.hpp"

namespace example {

/// Share of correctly classified samples (evaluation mode, batches of 512).
template <class Par>
double accuracy(Par& par, const dp::data::tensor_dataset<float, std::int64_t>& data) {
  par.eval();
  dp::data::loader eval{data, {.batch = 512, .prefetch = 0}};
  std::int64_t right = 0;
  for (auto [x, y] : eval.epoch(0)) {
    dp::tensor<std::int64_t> pred = dp::argmax(par(x), 1);  // on the first device of par
    right += dp::sum(pred == y.to(pred.device())).item();
  }
  par.train();
  return static_cast<double>(right) / static_cast<double>(data.size());
}

/// FNV-1a over the bytes of every parameter and buffer: equal fingerprints, equal weights.
template <class Model>
std::uint64_t fingerprint(const Model& m) {
  std::uint64_t h = 1469598103934665603ull;
  dp::nn::for_each_tensor(m, [&](const std::string&, const auto& t) {
    const auto v = t.value().contiguous().to_vector();
    const auto* p = reinterpret_cast<const unsigned char*>(v.data());
    for (std::size_t i = 0; i < v.size() * sizeof(v[0]); ++i) {
      h = (h ^ p[i]) * 1099511628211ull;
    }
  });
  return h;
}

/// Trains `par` for `epochs` (from a checkpoint when `resume` names one), checkpointing to `save`
/// after each epoch, then prints the test accuracy and the time spent training. Across processes
/// every rank trains and evaluates (their weights are equal); only the `leader` prints and saves.
template <class Par, class Opt, class Loss, class Loader>
void fit(Par& par, Opt& opt, const Loss& loss, const Loader& loader,
         const dp::data::tensor_dataset<float, std::int64_t>& test, int epochs, const std::string& save,
         const std::string& resume, bool leader = true, const std::string& recipe = "") {
  if (loader.data().size() == 0 || test.size() == 0) {  // an accuracy over no samples would print "-nan%"
    throw dp::value_error("dp: the data split into " + std::to_string(loader.data().size()) + " training and " +
                          std::to_string(test.size()) + " test samples; both need at least one (more data?)");
  }
  if (!save.empty() && leader) {  // checked before the first epoch trains, not when it ends (the leader saves)
    const std::filesystem::path file(save);
    const std::filesystem::path folder = file.has_parent_path() ? file.parent_path() : ".";
    if (std::filesystem::is_directory(file) || !std::filesystem::is_directory(folder)) {
      throw dp::value_error("dp: --save " + save + ": " +
                            (std::filesystem::is_directory(file)
                                 ? std::string("is a folder")
                                 : "the folder " + folder.string() + " does not exist") +
                            "; name a file in an existing folder");
    }
  }
  dp::io::progress start{};
  if (!resume.empty()) {
    // The recipe below guards the flags; --epochs may grow, and with it the cosine schedule's length.
    start = dp::io::load_checkpoint(resume, par, opt, dp::io::changed_options::keep);
    if (start.recipe != recipe) {
      throw dp::value_error("dp: --resume " + resume + ": the checkpoint was trained with '" + start.recipe +
                            "' but this run asks for '" + recipe +
                            "'; resume with the same flags (only --epochs may grow)");
    }
    if (start.epoch > epochs) {  // would train nothing and print the checkpoint's accuracy as this run's
      throw dp::value_error("dp: --resume " + resume + ": the checkpoint has trained " + std::to_string(start.epoch) +
                            " epochs, more than --epochs " + std::to_string(epochs) +
                            "; pass --epochs of at least that many");
    }
    if (start.batch != 0) {  // this loop saves at epoch ends only: a mid-epoch one was written elsewhere
      throw dp::value_error("dp: --resume " + resume + ": the checkpoint stops inside epoch " +
                            std::to_string(start.epoch) + " (batch " + std::to_string(start.batch) +
                            "); these examples resume from the end of an epoch, as they save");
    }
    if (leader) {
      std::printf("resumed from %s at epoch %lld\n", resume.c_str(), static_cast<long long>(start.epoch));
    }
  }
  if (leader) {
    std::ostringstream os;
    os << par;
    std::printf("%s\ntraining on %lld samples, testing on %lld\n", os.str().c_str(),
                static_cast<long long>(loader.data().size()), static_cast<long long>(test.size()));
  }
  double seconds = 0;
  for (int epoch = static_cast<int>(start.epoch); epoch < epochs; ++epoch) {
    progress bar(epoch, epochs, loader.batches(), loader.data().size(), leader);
    const auto t0 = std::chrono::steady_clock::now();
    long long step = 0;
    for (auto [x, y] : loader.epoch(epoch)) {
      bar.update(step++, par.backward(loss, x, y));
      opt.step();
    }
    seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (!save.empty() && leader) {
      dp::io::save_checkpoint(save, par, opt, {.epoch = epoch + 1, .recipe = recipe});
    }
    bar.finish(leader ? accuracy(par, test) : 0.0);
  }
  const double acc = accuracy(par, test);
  if (leader) {
    std::printf("test accuracy %.2f%% (%lld samples), training took %.3f s\n", acc * 100,
                static_cast<long long>(test.size()), seconds);
  }
}

}  // namespace example
