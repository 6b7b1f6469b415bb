// Loading is all-or-nothing even when memory runs out part-way: every allocation a load makes comes
// before its first write. The host pool takes its blocks from aligned_alloc; this file replaces it
// (for the test binary) with one that, once armed, refuses every block from the n-th on.
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include <dp/dp.hpp>

#include "../support/scratch.hpp"

namespace {
std::atomic<long> blocks_until_failure{-1};  // -1: never fail
}  // namespace

extern "C" void* aligned_alloc(std::size_t alignment, std::size_t size) noexcept {
  if (blocks_until_failure.load() >= 0 && blocks_until_failure.fetch_sub(1) <= 0) {
    blocks_until_failure.store(0);
    return nullptr;
  }
  void* p = nullptr;
  return posix_memalign(&p, alignment, size) == 0 ? p : nullptr;
}

namespace nn = dp::nn;
namespace io = dp::io;

namespace {
struct net {
  nn::linear<5, 8> fc1;
  nn::batch_norm<8> bn;
  nn::linear<8, 3> fc2;
  auto forward(auto x) const { return fc2(dp::relu(bn(fc1(x)))); }
};

std::string path_of(const std::string& name) { return dp_test::scratch_path(name + ".safetensors"); }

/// A 2-worker run with one step behind it; `seed` picks its weights.
struct run {
  explicit run(std::uint64_t seed) : par(make(seed), {dp::cpu(0), dp::cpu(1)}), opt(par, {.lr = 0.05}) { step(); }
  static net make(std::uint64_t seed) {
    nn::manual_seed(seed);
    return net{};
  }
  double step() {
    const auto x = dp::randn<float>({12, 5}, dp::cpu(), 3);
    const auto y = dp::from_vector<std::int64_t>({0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2});
    const double loss = par.backward(nn::cross_entropy_loss{}, x, y);
    opt.step();
    return loss;
  }
  /// Everything a later step depends on, as seen from outside: replica 0's model and the optimizer.
  std::vector<std::vector<float>> state() const {
    std::vector<std::vector<float>> out;
    nn::for_each_tensor(par.model(), [&](const std::string&, const auto& t) {
      std::vector<float> v;
      for (auto x : t.value().to_vector()) {
        v.push_back(static_cast<float>(x));
      }
      out.push_back(v);
    });
    for (const auto& s : opt.state()) {
      out.push_back(s.value.to_vector());
    }
    return out;
  }
  dp::parallel<net> par;
  dp::optim::adam<dp::parallel<net>> opt;

 private:
  run(const run&) = delete;
};

/// Loads with the host refusing every block from the n-th on, for n = 0, 1, ... until the load
/// succeeds; each refused load must leave the run as a twin that never tried (compared after one
/// more step on both workers, so a replica other than the first counts too). Returns the number of
/// refused loads.
template <class Load>
int refused_loads(Load load) {
  int refused = 0;
  for (long n = 0; n < 500; ++n) {
    run tried(5), twin(5);
    dp::empty_cache(dp::cpu(0));
    dp::empty_cache(dp::cpu(1));
    blocks_until_failure.store(n);
    bool ok = true;
    try {
      load(tried);
    } catch (const dp::error& e) {
      ok = false;
      CHECK(std::string(e.what()).find("cannot allocate") != std::string::npos);
    }
    blocks_until_failure.store(-1);
    if (ok) {
      break;
    }
    ++refused;
    INFO("the load refused from block ", n, " on");
    CHECK(tried.state() == twin.state());
    CHECK(tried.step() == twin.step());
    CHECK(tried.state() == twin.state());
  }
  return refused;
}
}  // namespace

TEST_CASE("a model load that runs out of memory part-way leaves every replica as it was") {
  const std::string path = path_of("load_failure_model");
  {
    const run other(9);
    io::save(path, other.par);
  }
  const int refused = refused_loads([&](run& r) { io::load(path, r.par); });
  CHECK(refused >= 3);  // one block per tensor and replica at least: failures reach past the first
  std::filesystem::remove(path);
}

TEST_CASE("a checkpoint load that runs out of memory part-way leaves the replicas and the optimizer as they were") {
  const std::string path = path_of("load_failure_checkpoint");
  {
    const run other(9);
    io::save_checkpoint(path, other.par, other.opt, {.epoch = 1});
  }
  const int refused = refused_loads([&](run& r) { (void)io::load_checkpoint(path, r.par, r.opt); });
  CHECK(refused >= 3);
  std::filesystem::remove(path);
}
