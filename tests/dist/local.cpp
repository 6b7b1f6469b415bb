#include <chrono>
#include <thread>
#include <vector>

#include <doctest/doctest.h>

#include <dp/dp.hpp>

namespace {
template <class F>
void on_ranks(int n, F f) {
  std::vector<std::thread> ts;
  for (int r = 0; r < n; ++r) {
    ts.emplace_back([&, r] { f(r); });
  }
  for (auto& t : ts) {
    t.join();
  }
}
}  // namespace

TEST_CASE("local all_reduce: sum, mean, max in rank order, identical on every rank") {
  for (int n : {1, 2, 3, 5}) {
    auto comms = dp::dist::make_local_communicators(n);
    std::vector<dp::tensor<double>> data(n), means(n), maxes(n);
    for (int r = 0; r < n; ++r) {
      data[r] = dp::arange<double>(2500) * double(r + 1);
      means[r] = data[r].clone();
      maxes[r] = data[r].clone();
    }
    on_ranks(n, [&](int r) {
      comms[r].all_reduce(data[r], dp::dist::reduce_op::sum);
      comms[r].all_reduce(means[r], dp::dist::reduce_op::mean);
      comms[r].all_reduce(maxes[r], dp::dist::reduce_op::max);
    });
    const double s = n * (n + 1) / 2.0;
    for (int r = 0; r < n; ++r) {
      auto v = data[r].to_vector();
      CHECK(v[7] == 7 * s);
      CHECK(v[2499] == 2499 * s);
      CHECK(means[r].to_vector()[10] == doctest::Approx(10 * s / n));
      CHECK(maxes[r].to_vector()[10] == 10.0 * n);
    }
  }
}

TEST_CASE("local broadcast, all_gather and reduce_scatter") {
  const int n = 3;
  auto comms = dp::dist::make_local_communicators(n);
  std::vector<dp::tensor<float>> b(n), in(n), gathered(n), part(n);
  for (int r = 0; r < n; ++r) {
    b[r] = dp::full<float>({4}, float(r));
    in[r] = dp::full<float>({6}, float(r + 1));
    gathered[r] = dp::zeros<float>({18});
    part[r] = dp::zeros<float>({2});
  }
  on_ranks(n, [&](int r) {
    comms[r].broadcast(b[r], 2);
    comms[r].all_gather(in[r], gathered[r]);
    comms[r].reduce_scatter(in[r], part[r], dp::dist::reduce_op::sum);
    comms[r].barrier();
  });
  for (int r = 0; r < n; ++r) {
    CHECK(b[r].to_vector() == std::vector<float>(4, 2.f));
    auto g = gathered[r].to_vector();
    CHECK(g[0] == 1.f);
    CHECK(g[6] == 2.f);
    CHECK(g[17] == 3.f);
    CHECK(part[r].to_vector() == std::vector<float>(2, 6.f));
  }
}

TEST_CASE("a collective whose peers never arrive times out with the collective's name") {
  auto comms = dp::dist::make_local_communicators(2, {.timeout = std::chrono::milliseconds(200)});
  auto t = dp::ones<float>({3});
  CHECK_THROWS_WITH_AS(comms[0].all_reduce(t, dp::dist::reduce_op::sum),
                       doctest::Contains("all_reduce timed out on rank 0"), dp::runtime_error);
}
