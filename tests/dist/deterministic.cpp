// The deterministic mode: the same bits for any number of host workers (and, in tests/mpi, ranks),
// and the default mode as the control that shows the difference is real.
#include <algorithm>
#include <cstring>
#include <exception>
#include <limits>
#include <random>
#include <thread>
#include <vector>

#include <doctest/doctest.h>

#include <dp/dp.hpp>

namespace nn = dp::nn;

namespace {

struct net {
  nn::linear<12, 24> fc1;
  nn::batch_norm<24> bn;
  nn::dropout drop{0.2f};
  nn::linear<24, 5> fc2;
  auto forward(auto x) const { return fc2(drop(dp::relu(bn(fc1(x))))); }
};

struct rows_only {  // no batch statistics: a training-mode forward changes no buffer
  nn::linear<12, 24> fc1;
  nn::dropout drop{0.3f};
  nn::linear<24, 5> fc2;
  auto forward(auto x) const { return fc2(drop(dp::relu(fc1(x)))); }
};

std::vector<dp::device> workers(int n) {
  std::vector<dp::device> d;
  for (int i = 0; i < n; ++i) {
    d.push_back(dp::cpu(i));
  }
  return d;
}

/// Every parameter and buffer after `steps` adamw steps on one global batch of `samples`, then
/// the last loss: the bytes a memcmp compares.
/// How a step fails before the training steps: not at all, by a label out of range in the last row
/// (on the last worker), or by a NaN in the first input row (a NaN loss, batch statistics poisoned).
enum class failure { none, label, nan_input };

/// `ignored`: that many first targets, and every third after them, are cross_entropy's ignore_index.
std::vector<unsigned char> trained(int n, bool deterministic, dp::index_t samples = 37, int steps = 20,
                                   dp::index_t chunk = 5, failure first = failure::none, dp::index_t ignored = 0) {
  nn::manual_seed(7);
  dp::parallel<net> par{net{}, workers(n), {.deterministic = deterministic, .chunk = chunk}};
  auto opt = dp::optim::adamw(par, {.lr = 1e-2});
  const auto x = dp::randn<float>({samples, 12}, dp::cpu(), 3);
  dp::tensor<std::int64_t> y = dp::cast<std::int64_t>(dp::rand<float>({samples}, dp::cpu(), 4) * 4.99f);
  for (dp::index_t i = 0; ignored > 0 && i < samples; ++i) {
    if (i < ignored || i % 3 == 0) {
      y.data()[i] = nn::cross_entropy.ignore_index;
    }
  }
  if (first == failure::label) {
    dp::tensor<std::int64_t> bad = y.clone();
    bad.data()[samples - 1] = 99;
    CHECK_THROWS_WITH((void)par.backward(nn::cross_entropy, x, bad), doctest::Contains("99"));
  } else if (first == failure::nan_input) {
    dp::tensor<float> bad = x.clone();
    bad.data()[0] = std::numeric_limits<float>::quiet_NaN();
    CHECK_THROWS_WITH((void)par.backward(nn::cross_entropy, bad, y), doctest::Contains("the loss of step 1 is NaN"));
  }
  double loss = 0;
  for (int s = 0; s < steps; ++s) {
    loss = par.backward(nn::cross_entropy, x, y);
    opt.step();
  }
  std::vector<unsigned char> bytes;
  auto add = [&](const auto& t) {
    const auto v = t.to_vector();
    const auto* p = reinterpret_cast<const unsigned char*>(v.data());
    bytes.insert(bytes.end(), p, p + v.size() * sizeof(v[0]));
  };
  nn::for_each_parameter(par.model(), [&](const std::string&, const auto& w) { add(w.value()); });
  nn::for_each_buffer(par.model(), [&](const std::string&, const auto& b) { add(b.value()); });
  const auto* l = reinterpret_cast<const unsigned char*>(&loss);
  bytes.insert(bytes.end(), l, l + sizeof(loss));
  return bytes;
}

bool same_bits(const std::vector<unsigned char>& a, const std::vector<unsigned char>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size()) == 0;
}

/// The tree's definition, written out on its own: node (a, s) over `k` chunks of v.
template <class V>
V tree_sum(const std::vector<V>& v, std::int64_t a, std::int64_t s) {
  if (s == 1) {
    return v[static_cast<std::size_t>(a)];
  }
  const std::int64_t k = static_cast<std::int64_t>(v.size());
  if (a + s / 2 >= k) {
    return tree_sum(v, a, s / 2);
  }
  return tree_sum(v, a, s / 2) + tree_sum(v, a + s / 2, s / 2);
}

/// A local communicator that counts the float values each rank receives from the others, and the
/// collectives it takes part in.
class counting_communicator {
 public:
  counting_communicator(dp::dist::local_communicator c, std::int64_t* received, int* calls)
      : c_(std::move(c)), got_(received), calls_(calls) {}
  using request = dp::dist::local_communicator::request;
  int rank() const { return c_.rank(); }
  int size() const { return c_.size(); }
  std::string name() const { return "counting " + c_.name(); }
  template <class T>
  void all_reduce(dp::tensor<T>& t, dp::dist::reduce_op op) {
    count<T>(t.numel());  // at least what a rank needs from the others
    c_.all_reduce(t, op);
  }
  template <class T>
  void broadcast(dp::tensor<T>& t, int root) {
    count<T>(rank() == root ? 0 : t.numel());
    c_.broadcast(t, root);
  }
  template <class T>
  void all_gather(const dp::tensor<T>& in, dp::tensor<T>& out) {
    count<T>(out.numel() - in.numel());
    c_.all_gather(in, out);
  }
  template <class T>
  void reduce_scatter(const dp::tensor<T>& in, dp::tensor<T>& out, dp::dist::reduce_op op) {
    count<T>(in.numel() - out.numel());
    c_.reduce_scatter(in, out, op);
  }
  template <class T>
  void all_to_all(const dp::tensor<T>& in, dp::tensor<T>& out) {
    count<T>(out.numel() - out.numel() / size());
    c_.all_to_all(in, out);
  }
  void barrier() { c_.barrier(); }
  template <class T>
  request start_all_reduce(dp::tensor<T>& t, dp::dist::reduce_op op) {
    count<T>(t.numel());
    return c_.start_all_reduce(t, op);
  }
  bool test(request& q) { return c_.test(q); }
  void wait(request& q) { c_.wait(q); }
  void abort(const std::string& why) { c_.abort(why); }
  void recover() { c_.recover(); }

 private:
  template <class T>
  void count(std::int64_t values) {
    ++*calls_;
    if constexpr (std::is_same_v<T, float>) {
      *got_ += values;
    }
  }
  dp::dist::local_communicator c_;
  std::int64_t* got_;
  int* calls_;
};
static_assert(dp::dist::communicator<counting_communicator>);

}  // namespace

TEST_CASE("deterministic: any split of the chunks into tiles gives the tree's sum, bit for bit") {
  namespace dd = dp::dist::detail;
  std::mt19937 gen(5);
  std::uniform_real_distribution<float> value(-1.0f, 1.0f);
  for (std::int64_t k = 1; k <= 40; ++k) {
    CAPTURE(k);
    std::vector<float> v(static_cast<std::size_t>(k));
    for (auto& x : v) {
      x = std::ldexp(value(gen), static_cast<int>(gen() % 40) - 20);  // magnitudes far apart: order shows
    }
    std::int64_t root = 1;
    while (root < k) {
      root *= 2;
    }
    const float want = tree_sum(v, 0, root);
    for (int trial = 0; trial < 20; ++trial) {
      // Random cuts into parts (replicas or ranks), each tiled by its largest nodes.
      std::vector<dd::chunk_range> given, tiles;
      std::vector<float> values;
      for (std::int64_t a = 0; a < k;) {
        const std::int64_t b = std::min<std::int64_t>(k, a + 1 + static_cast<std::int64_t>(gen() % 9));
        dd::tile(a, b, k, tiles);
        for (const auto& t : tiles) {
          CHECK(t.first >= a);
          CHECK(t.end <= b);
          // A tile is a node of the tree: its size is a power of two its first chunk is a multiple of.
          std::int64_t s = 1;
          while (std::min(t.first + s, k) < t.end) {
            s *= 2;
          }
          CHECK(t.first % s == 0);
          given.push_back(t);
          values.push_back(tree_sum(v, t.first, s));
        }
        a = b;
      }
      dd::tree_program p;
      p.plan({0, k}, k, given);
      std::vector<float> scratch(p.steps.size() * static_cast<std::size_t>(dd::tree_block) + 1);
      std::vector<std::vector<float>> in(values.size());
      for (std::size_t i = 0; i < values.size(); ++i) {
        in[i].assign(3, values[i]);  // three elements, each the same sums
      }
      std::vector<float> out(3, 0.0f);
      dd::run_tree<float>(
          p, [&](int o) { return in[static_cast<std::size_t>(o)].data(); }, [&](int) { return out.data(); }, 1, 0, 3,
          scratch.data());
      CHECK(std::memcmp(&out[2], &want, sizeof(float)) == 0);
    }
  }
}

TEST_CASE("deterministic: across ranks the root has the tree's bits, and a rank receives an all-reduce's bytes") {
  // Ranks are threads on local communicators here (tests/mpi runs the same over MPI). Each rank
  // passes one leaf per chunk of its share and keeps its chunk_tree from step to step (the shares
  // change, so does the most nodes a rank holds). 3 values are fewer than the ranks, 1001 do not
  // split evenly, 9001 are cut into two parts (across the ranks' slices) that two threads run.
  namespace dd = dp::dist::detail;
  constexpr dp::index_t extras = 2;
  std::mt19937 gen(11);
  std::uniform_real_distribution<float> value(-1.0f, 1.0f);
  auto threaded = [](auto& task, int n) {
    std::vector<std::thread> parts;
    for (int k = 0; k < n; ++k) {
      parts.emplace_back([&task, k] { task(k); });
    }
    for (auto& p : parts) {
      p.join();
    }
  };
  for (dp::index_t params : {3, 1001, 9001}) {
    for (int ranks : {2, 3, 4, 5}) {
      auto locals = dp::dist::make_local_communicators(ranks);
      std::vector<std::int64_t> received(static_cast<std::size_t>(ranks), 0);
      std::vector<int> calls(static_cast<std::size_t>(ranks), 0);
      std::vector<dp::dist::any_communicator> comms;
      std::vector<dd::chunk_tree<float>> trees;
      for (int r = 0; r < ranks; ++r) {
        comms.emplace_back(counting_communicator{locals[static_cast<std::size_t>(r)],
                                                 &received[static_cast<std::size_t>(r)],
                                                 &calls[static_cast<std::size_t>(r)]});
        trees.emplace_back(params, extras);
      }
      for (int step = 0; step < 4; ++step) {
        const dp::index_t k = 2 + static_cast<dp::index_t>(gen() % 19);
        CAPTURE(params);
        CAPTURE(ranks);
        CAPTURE(k);
        std::vector<std::vector<float>> leaf(static_cast<std::size_t>(k), std::vector<float>(params));
        std::vector<std::vector<double>> leaf_x(static_cast<std::size_t>(k), std::vector<double>(extras));
        for (dp::index_t c = 0; c < k; ++c) {
          for (auto& x : leaf[static_cast<std::size_t>(c)]) {
            x = std::ldexp(value(gen), static_cast<int>(gen() % 40) - 20);
          }
          for (auto& x : leaf_x[static_cast<std::size_t>(c)]) {
            x = std::ldexp(static_cast<double>(value(gen)), static_cast<int>(gen() % 40) - 20);
          }
        }
        // Contiguous shares, some of them empty, cut at random.
        std::vector<dp::index_t> cuts{0, k};
        for (int r = 1; r < ranks; ++r) {
          cuts.push_back(static_cast<dp::index_t>(gen() % static_cast<unsigned>(k + 1)));
        }
        std::sort(cuts.begin(), cuts.end());
        std::vector<dd::chunk_range> share;
        std::size_t most = 0;
        std::vector<dd::chunk_range> tiles;
        for (int r = 0; r < ranks; ++r) {
          share.push_back({cuts[static_cast<std::size_t>(r)], cuts[static_cast<std::size_t>(r) + 1]});
          dd::tile(share.back().first, share.back().end, k, tiles);
          most = std::max(most, tiles.size());
        }
        std::fill(received.begin(), received.end(), 0);
        std::fill(calls.begin(), calls.end(), 0);
        std::vector<std::vector<float>> got(static_cast<std::size_t>(ranks));
        std::vector<std::vector<double>> got_x(static_cast<std::size_t>(ranks));
        std::vector<std::exception_ptr> failed(static_cast<std::size_t>(ranks));
        std::vector<std::thread> threads;
        for (int r = 0; r < ranks; ++r) {
          threads.emplace_back([&, r] {
            const auto i = static_cast<std::size_t>(r);
            try {
              std::vector<dd::tree_node<float>> mine;
              for (dp::index_t c = share[i].first; c < share[i].end; ++c) {
                const auto j = static_cast<std::size_t>(c);
                mine.push_back({{c, c + 1}, 1, leaf[j].data(), leaf_x[j].data()});
              }
              std::vector<dp::tensor<float>> outs{dp::zeros<float>({params})};
              const double* sums = trees[i].reduce(mine, k, share, r, &comms[i], outs, threaded, 2);
              got[i] = outs[0].to_vector();
              got_x[i].assign(sums, sums + extras);
            } catch (...) {
              failed[i] = std::current_exception();
              comms[i].abort("a rank failed");
            }
          });
        }
        for (auto& t : threads) {
          t.join();
        }
        for (const auto& e : failed) {
          if (e) {
            std::rethrow_exception(e);
          }
        }
        const dp::index_t root = dd::root_size(k);
        for (int r = 0; r < ranks; ++r) {
          CAPTURE(r);
          const auto i = static_cast<std::size_t>(r);
          int wrong = 0;
          for (dp::index_t e = 0; e < params; ++e) {
            std::vector<float> column;
            for (dp::index_t c = 0; c < k; ++c) {
              column.push_back(leaf[static_cast<std::size_t>(c)][static_cast<std::size_t>(e)]);
            }
            const float want = tree_sum(column, 0, root);
            wrong += std::memcmp(&got[i][static_cast<std::size_t>(e)], &want, sizeof(float)) != 0;
          }
          CHECK(wrong == 0);
          for (dp::index_t q = 0; q < extras; ++q) {
            std::vector<double> column;
            for (dp::index_t c = 0; c < k; ++c) {
              column.push_back(leaf_x[static_cast<std::size_t>(c)][static_cast<std::size_t>(q)]);
            }
            const double want = tree_sum(column, 0, root);
            CHECK(std::memcmp(&got_x[i][static_cast<std::size_t>(q)], &want, sizeof(double)) == 0);
          }
          // The slices' exchange and the all-gather: (most + 1) slices from each other rank, against
          // (ranks - 1) x most whole nodes when every rank gathered every other's.
          const std::int64_t width = (params + ranks - 1) / ranks;
          CHECK(received[i] <=
                std::max<std::int64_t>(params, static_cast<std::int64_t>(most + 1) * (ranks - 1) * width));
          // In three collectives however many nodes a rank holds (the slices in one all-to-all, the
          // extras' and the root's all-gathers), or two all-reduces in the pairwise case.
          CAPTURE(most);
          CHECK(calls[i] <= 3);
        }
      }
    }
  }
}

TEST_CASE("deterministic: every parameter, buffer and the loss have the same bits on 1, 2, 3, 4 and 7 workers") {
  // 37 samples in chunks of 5 (the last one 2 samples): 8 chunks, spread unevenly over 3 and 7 workers.
  const auto one = trained(1, true);
  for (int n : {2, 3, 4, 7}) {
    CAPTURE(n);
    CHECK(same_bits(trained(n, true), one));
  }
}

TEST_CASE("deterministic: a batch with fewer chunks than workers, and chunks larger than a worker's share") {
  const auto one = trained(1, true, 10, 5, 4);  // chunks 4, 4, 2: workers 4 to 7 get none
  CHECK(same_bits(trained(7, true, 10, 5, 4), one));
  CHECK(same_bits(trained(2, true, 10, 5, 4), one));
}

TEST_CASE("deterministic: cross_entropy with ignored targets has the same bits on 1, 2, 3 and 7 workers") {
  // The first 10 targets ignored (whole chunks and replicas score nothing) and every third after:
  // each chunk sums its scored rows and the tree's sum is divided by the batch's 19 scored rows.
  const auto one = trained(1, true, 37, 20, 5, failure::none, 10);
  for (int n : {2, 3, 7}) {
    CAPTURE(n);
    CHECK(same_bits(trained(n, true, 37, 20, 5, failure::none, 10), one));
  }
}

TEST_CASE("deterministic: a chunk as large as INT64_MAX is one chunk of the whole batch, as a chunk of its size") {
  const auto whole = trained(1, true, 10, 5, 10);  // (10 + chunk - 1) / chunk overflowed before
  CHECK(same_bits(trained(1, true, 10, 5, std::numeric_limits<dp::index_t>::max()), whole));
  CHECK(same_bits(trained(3, true, 10, 5, std::numeric_limits<dp::index_t>::max()), whole));
}

TEST_CASE("a step that fails, on one worker or by a NaN loss, leaves the model as it was (both modes)") {
  // The workers that finished their part moved batch statistics and step counters: all of it is
  // put back, so the steps that follow give the bits of a run that never failed.
  for (const bool deterministic : {true, false}) {
    for (const int n : {1, 3}) {
      CAPTURE(deterministic);
      CAPTURE(n);
      const auto clean = trained(n, deterministic);
      CHECK(same_bits(trained(n, deterministic, 37, 20, 5, failure::label), clean));
      CHECK(same_bits(trained(n, deterministic, 37, 20, 5, failure::nan_input), clean));
    }
  }
}

TEST_CASE("the default mode is allowed to differ with the worker count (the control of the cases above)") {
  // If this ever holds bit for bit, the deterministic tests above no longer show anything.
  CHECK_FALSE(same_bits(trained(1, false), trained(3, false)));
}

TEST_CASE("deterministic: a training-mode par(x) that would update batch statistics is refused with what to do") {
  nn::manual_seed(1);
  dp::parallel<net> par{net{}, workers(2), {.deterministic = true}};
  const auto x = dp::randn<float>({8, 12}, dp::cpu(), 3);
  CHECK_THROWS_WITH_AS((void)par(x), doctest::Contains("call par.eval() before par(x)"), dp::value_error);
  par.eval();
  CHECK_NOTHROW((void)par(x));
  // Without batch statistics a training-mode forward changes no parameter or buffer, so nothing
  // the mode promises depends on it: allowed.
  nn::manual_seed(2);
  dp::parallel<rows_only> three{rows_only{}, workers(3), {.deterministic = true}};
  CHECK_NOTHROW((void)three(x));
}

TEST_CASE("deterministic: no_sync and a chunk of zero are refused with what to do") {
  nn::manual_seed(1);
  dp::parallel<net> par{net{}, workers(2), {.deterministic = true}};
  const auto x = dp::randn<float>({8, 12}, dp::cpu(), 3);
  const dp::tensor<std::int64_t> y = dp::zeros<std::int64_t>({8});
  CHECK_THROWS_WITH_AS((void)par.backward(nn::cross_entropy, x, y, dp::no_sync),
                       doctest::Contains("dp::no_sync is not available in the deterministic mode"), dp::value_error);
  CHECK_THROWS_WITH_AS((dp::parallel<net>{net{}, workers(2), {.deterministic = true, .chunk = 0}}),
                       doctest::Contains("parallel_options::chunk must be positive"), dp::value_error);
}

TEST_CASE("deterministic: a steady step on host workers allocates no tensor memory") {
  nn::manual_seed(4);
  dp::parallel<net> par{net{}, workers(3), {.deterministic = true, .chunk = 2}};
  auto opt = dp::optim::sgd(par, {.lr = 0.01, .momentum = 0.9});
  const auto x = dp::randn<float>({20, 12}, dp::cpu(), 3);
  const auto y = dp::from_vector<std::int64_t>(std::vector<std::int64_t>(20, 2));
  for (int i = 0; i < 3; ++i) {  // trace, then warm the pools and the tree's stores
    (void)par.backward(nn::cross_entropy, x, y);
    opt.step();
  }
  const auto before = dp::counters();
  for (int i = 0; i < 10; ++i) {
    (void)par.backward(nn::cross_entropy, x, y);
    opt.step();
  }
  CHECK(dp::counters().allocations - before.allocations == 0);
}
