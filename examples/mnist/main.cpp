// Trains an MLP on MNIST from the four IDX files a user already has (dp downloads nothing):
//
//   mnist --data DIR [--devices cpu:0-1] [--epochs 5] [--batch 128] [--lr 0.05] [--seed 1]
//         [--save PATH] [--resume PATH]
//
// DIR holds train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte and
// t10k-labels-idx1-ubyte (each may be .gz). Same loop as train_digits: dp::parallel over every
// device, SGD with momentum and a cosine schedule, a progress bar, checkpoints.
#include <cstdint>
#include <cstdio>
#include <exception>
#include <string>

#include <dp/dp.hpp>

#include "../common/flags.hpp"
#include "../common/train.hpp"

namespace nn = dp::nn;

using model = nn::sequential<nn::linear<784, 256>, nn::relu, nn::linear<256, 128>, nn::relu, nn::linear<128, 10>>;

namespace {
const char* usage =
    "mnist: trains a 784-256-128-10 MLP on MNIST with dp::parallel.\n"
    "\n"
    "  --data DIR       folder with the four MNIST IDX files (plain or .gz); required\n"
    "  --devices LIST   device indices: cpu:0-3 (host workers 0 to 3), cuda:0,1 (default: every GPU, else one host "
    "worker per core)\n"
    "  --epochs N       epochs (default 5)\n"
    "  --batch N        global batch size (default 128)\n"
    "  --lr X           SGD learning rate (> 0), momentum 0.9, cosine schedule (default 0.05)\n"
    "  --seed N         seed of the initialisation and the shuffling (default 1)\n"
    "  --save PATH      write a checkpoint after every epoch\n"
    "  --resume PATH    continue from a checkpoint written by --save\n"
    "  --help           this text\n";
}  // namespace

int main(int argc, char** argv) {
  const example::flags f(argc, argv, usage,
                         {{"data", ""},
                          {"devices", ""},
                          {"epochs", "5"},
                          {"batch", "128"},
                          {"lr", "0.05"},
                          {"seed", "1"},
                          {"save", ""},
                          {"resume", ""}});
  if (f.str("data").empty()) {
    std::fprintf(stderr,
                 "mnist: --data DIR is required: a folder with train-images-idx3-ubyte, train-labels-idx1-ubyte,\n"
                 "t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte (plain or .gz). dp downloads nothing.\n");
    return 2;
  }
  std::uint64_t seed = 0;
  int epochs = 0;
  dp::index_t batch = 0;
  double lr = 0;
  try {
    seed = static_cast<std::uint64_t>(f.integer("seed", 0, INT64_MAX));
    epochs = static_cast<int>(f.integer("epochs", 1, 1000000));
    batch = f.integer("batch", 1, 1 << 30);
    lr = f.number("lr", [](double v) { return v > 0; }, "a number > 0");  // 0 would train nothing
  } catch (const example::flag_error& e) {                                // before the data is read
    std::fprintf(stderr, "%s\n", e.what());
    return 2;
  }
  try {
    const auto devices = f.str("devices").empty() ? dp::devices() : dp::parse_devices(f.str("devices"));
    const auto train = dp::data::mnist_dataset(f.str("data"), true);
    const auto test = dp::data::mnist_dataset(f.str("data"), false);
    dp::data::loader loader{train, {.batch = batch, .shuffle = true, .seed = seed}};
    nn::manual_seed(seed);
    dp::parallel<model> par{model{}, devices};
    auto opt =
        dp::optim::sgd(par, {.lr = lr, .momentum = 0.9, .schedule = dp::optim::cosine_lr(epochs * loader.batches())});
    const std::string recipe = "batch=" + f.str("batch") + " seed=" + f.str("seed") + " lr=" + f.str("lr");
    example::fit(par, opt, nn::cross_entropy_loss{}, loader, test, epochs, f.str("save"), f.str("resume"), true,
                 recipe);
  } catch (const example::flag_error& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 2;
  } catch (const dp::error& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  } catch (const std::exception& e) {  // not dp's (memory, threads): a message and exit 1, not an abort
    std::fprintf(stderr, "mnist: %s\n", e.what());
    return 1;
  }
  return 0;
}
