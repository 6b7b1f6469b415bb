#include <chrono>
#include <cmath>
#include <cstdint>
#include <latch>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <doctest/doctest.h>

#include <dp/dp.hpp>

namespace {
struct tiny {
  dp::nn::linear<2, 2> fc;
  auto forward(auto x) const { return fc(x); }
};

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

TEST_CASE("local all_to_all: block q of rank r's output is block r of rank q's input, for any element type") {
  const int n = 3;
  auto comms = dp::dist::make_local_communicators(n);
  std::vector<dp::tensor<std::int64_t>> in(n), out(n);
  std::vector<dp::dist::any_communicator> erased;
  for (int r = 0; r < n; ++r) {
    std::vector<std::int64_t> v;
    for (int b = 0; b < n; ++b) {
      v.insert(v.end(), {100 * r + 10 * b, 100 * r + 10 * b + 1});  // rank r's block for rank b
    }
    in[r] = dp::from_vector(v);
    out[r] = dp::zeros<std::int64_t>({2 * n});
    erased.emplace_back(comms[r]);
  }
  on_ranks(n, [&](int r) { erased[r].all_to_all(in[r], out[r]); });
  CHECK(out[0].to_vector() == std::vector<std::int64_t>{0, 1, 100, 101, 200, 201});
  CHECK(out[2].to_vector() == std::vector<std::int64_t>{20, 21, 120, 121, 220, 221});
  dp::tensor<std::int64_t> odd = dp::zeros<std::int64_t>({5});
  CHECK_THROWS_WITH_AS(comms[0].all_to_all(odd, odd), doctest::Contains("both must be 3 equal blocks"),
                       dp::shape_error);
}

TEST_CASE("every collective refuses a strided, undefined or misplaced tensor by name, before any rank waits") {
  // One rank of two calls alone: a refused call must throw at once, not wait for the other rank.
  auto comms = dp::dist::make_local_communicators(2);
  dp::tensor<float> grid = dp::zeros<float>({4, 4});
  dp::tensor<float> column = grid.slice(1, 0, 2);  // 8 elements in rows 4 apart
  dp::tensor<float> none;
  dp::tensor<float> flat = dp::zeros<float>({8});
  const auto refused = [](auto call, const char* what) {
    CAPTURE(what);
    CHECK_THROWS_WITH_AS(call(), doctest::Contains(what), dp::value_error);
  };
  refused([&] { comms[0].all_reduce(column, dp::dist::reduce_op::sum); },
          "dp: all_reduce on the local communicator needs a contiguous tensor in host memory, got a strided "
          "tensor on cpu:0");
  refused([&] { comms[0].broadcast(none, 0); },
          "dp: broadcast on the local communicator needs a contiguous tensor "
          "in host memory, got an undefined tensor");
  refused([&] { comms[0].all_gather(column, flat); }, "all_gather on the local communicator");
  refused([&] { comms[0].reduce_scatter(flat, column, dp::dist::reduce_op::sum); },
          "reduce_scatter on the local communicator");
  refused([&] { comms[0].all_to_all(flat, none); }, "all_to_all on the local communicator");
  refused([&] { (void)comms[0].start_all_reduce(column, dp::dist::reduce_op::sum); },
          "all_reduce on the local communicator needs a contiguous tensor");
  // The erased communicator applies the same rule.
  dp::dist::any_communicator erased{comms[0]};
  refused([&] { erased.all_reduce(column, dp::dist::reduce_op::sum); }, "got a strided tensor on cpu:0");
}

TEST_CASE("hierarchical all_to_all: processes x local replicas exchange blocks as one flat group would") {
  // Processes are groups of threads here, their leaders joined by a local communicator (tests/mpi
  // runs the same over MPI). Rank r's block for rank q holds (r, q, element).
  for (auto [processes, locals] : {std::pair{3, 2}, std::pair{2, 3}, std::pair{1, 2}, std::pair{3, 1}}) {
    CAPTURE(processes);
    CAPTURE(locals);
    const int n = processes * locals;
    constexpr int c = 2;
    auto leaders = dp::dist::make_local_communicators(processes);
    std::vector<std::vector<dp::dist::local_communicator>> groups;
    for (int p = 0; p < processes; ++p) {
      groups.push_back(dp::dist::make_local_communicators(locals));
    }
    std::vector<std::vector<std::int64_t>> got(static_cast<std::size_t>(n)), summed(static_cast<std::size_t>(n));
    std::vector<std::int64_t> means(static_cast<std::size_t>(n));
    on_ranks(n, [&](int g) {
      const int p = g / locals, l = g % locals;
      std::optional<dp::dist::local_communicator> global;
      if (l == 0) {
        global.emplace(leaders[static_cast<std::size_t>(p)]);
      }
      dp::dist::hierarchical_communicator<dp::dist::local_communicator> h{
          groups[static_cast<std::size_t>(p)][static_cast<std::size_t>(l)], std::move(global), p, processes};
      std::vector<std::int64_t> v;
      for (int q = 0; q < n; ++q) {
        for (int e = 0; e < c; ++e) {
          v.push_back(1000 * h.rank() + 10 * q + e);
        }
      }
      // Blocks are runs of elements whatever the shapes: here one row per destination (a row-sliced
      // output once took rows for elements).
      dp::tensor<std::int64_t> out = dp::zeros<std::int64_t>({n, c});
      h.all_to_all(dp::from_vector(v).reshape({n, c}), out);
      got[static_cast<std::size_t>(g)] = out.to_vector();
      dp::tensor<std::int64_t> part = dp::zeros<std::int64_t>({1, c});
      h.reduce_scatter(dp::from_vector(v).reshape({n, c}), part, dp::dist::reduce_op::sum);
      summed[static_cast<std::size_t>(g)] = part.to_vector();
      // An integer mean divides the sum (times 1/size was 0 for integers).
      dp::tensor<std::int64_t> m = dp::full<std::int64_t>({1}, 10 * (h.rank() + 1));
      h.all_reduce(m, dp::dist::reduce_op::mean);
      means[static_cast<std::size_t>(g)] = m.item();
    });
    CHECK(means == std::vector<std::int64_t>(static_cast<std::size_t>(n), 10 * n * (n + 1) / 2 / n));
    for (int g = 0; g < n; ++g) {
      std::vector<std::int64_t> want;
      for (int r = 0; r < n; ++r) {
        for (int e = 0; e < c; ++e) {
          want.push_back(1000 * r + 10 * g + e);
        }
      }
      CHECK(got[static_cast<std::size_t>(g)] == want);
      std::vector<std::int64_t> sum(c);  // row g of every rank's input, summed: sum over r of 1000 r + 10 g + e
      for (int r = 0; r < n; ++r) {
        for (int e = 0; e < c; ++e) {
          sum[static_cast<std::size_t>(e)] += 1000 * r + 10 * g + e;
        }
      }
      CHECK(summed[static_cast<std::size_t>(g)] == sum);
    }
  }
}

TEST_CASE("a hierarchical communicator refuses a cross-process communicator that numbers processes otherwise") {
  auto leaders = dp::dist::make_local_communicators(3);
  auto group = dp::dist::make_local_communicators(1);
  using hier = dp::dist::hierarchical_communicator<dp::dist::local_communicator>;
  CHECK_THROWS_WITH_AS(hier(group[0], leaders[1], 2, 3),
                       doctest::Contains("was given a cross-process communicator of rank 1 of 3"), dp::value_error);
  CHECK_THROWS_WITH_AS(hier(group[0], leaders[2], 2, 4), doctest::Contains("rank 2 of 3"), dp::value_error);
  CHECK_NOTHROW(hier(group[0], leaders[2], 2, 3));
  // A replica that is not its process's leader checks its place too: rank() and reduce_scatter's
  // blocks follow from it.
  auto pair = dp::dist::make_local_communicators(2);
  CHECK_THROWS_WITH_AS(hier(pair[1], std::nullopt, 3, 3), doctest::Contains("process 3 of 3; expected"),
                       dp::value_error);
  CHECK_THROWS_WITH_AS(hier(pair[1], std::nullopt, 0, 0), doctest::Contains("process 0 of 0; expected"),
                       dp::value_error);
  CHECK_NOTHROW(hier(pair[1], std::nullopt, 1, 2));
}

TEST_CASE("local max and min: a NaN on any rank gives NaN, whatever the rank order; a group size below 1 is refused") {
  for (const int nan_rank : {0, 1, 2}) {
    CAPTURE(nan_rank);
    auto comms = dp::dist::make_local_communicators(3);
    std::vector<dp::tensor<float>> maxes(3), mins(3);
    for (int r = 0; r < 3; ++r) {
      const float v = r == nan_rank ? NAN : static_cast<float>(r);
      maxes[r] = dp::from_vector<float>({v, static_cast<float>(r)});
      mins[r] = maxes[r].clone();
    }
    on_ranks(3, [&](int r) {
      comms[r].all_reduce(maxes[r], dp::dist::reduce_op::max);
      comms[r].all_reduce(mins[r], dp::dist::reduce_op::min);
    });
    for (int r = 0; r < 3; ++r) {
      CHECK(std::isnan(maxes[r].to_vector()[0]));  // a NaN on rank 0 was dropped: max(NaN, 1) gave 1
      CHECK(std::isnan(mins[r].to_vector()[0]));
      CHECK(maxes[r].to_vector()[1] == 2.f);
      CHECK(mins[r].to_vector()[1] == 0.f);
    }
  }
  // -1 sized the group's vectors before the check: std::length_error.
  CHECK_THROWS_WITH_AS(dp::dist::make_local_communicators(-1), doctest::Contains("at least one rank, got -1"),
                       dp::value_error);
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

TEST_CASE("ranks that pass different sizes all refuse at once, naming the sizes (none waits for the timeout)") {
  const int n = 2;
  // A long timeout: a rank left waiting for one that threw would make this test take a minute.
  auto comms = dp::dist::make_local_communicators(n, {.timeout = std::chrono::milliseconds(60000)});
  std::vector<dp::tensor<float>> in{dp::ones<float>({4}), dp::ones<float>({6})};  // rank 1 passes more
  std::vector<dp::tensor<float>> part{dp::zeros<float>({2}), dp::zeros<float>({3})};
  std::vector<dp::tensor<float>> b{dp::ones<float>({4}), dp::ones<float>({5})};
  const auto t0 = std::chrono::steady_clock::now();
  on_ranks(n, [&](int r) {
    CHECK_THROWS_WITH_AS(comms[r].reduce_scatter(in[r], part[r], dp::dist::reduce_op::sum),
                         doctest::Contains("reduce_scatter: rank 1 passed 6 elements but rank 0 passed 4"),
                         dp::value_error);
  });
  on_ranks(n, [&](int r) {  // the root too: it is not left at the second rendezvous
    CHECK_THROWS_WITH_AS(comms[r].broadcast(b[r], 0), doctest::Contains("broadcast: rank 1 passed 20 bytes"),
                         dp::value_error);
  });
  CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(30));
}

TEST_CASE("ranks that pass other element types, ops or roots all refuse at once, naming both") {
  // Each rank reads the others' buffers as its own element type: a double read where a float was
  // posted went past its end (heap overflow), and other ops or roots mixed results silently.
  auto comms = dp::dist::make_local_communicators(2, {.timeout = std::chrono::milliseconds(60000)});
  const auto t0 = std::chrono::steady_clock::now();
  dp::tensor<float> f = dp::ones<float>({1024});
  dp::tensor<double> d = dp::ones<double>({1024});
  on_ranks(2, [&](int r) {
    const auto expect = doctest::Contains("all_reduce: rank 1 passed double elements but rank 0 passed float");
    if (r == 0) {
      CHECK_THROWS_WITH_AS(comms[r].all_reduce(f, dp::dist::reduce_op::sum), expect, dp::value_error);
    } else {
      CHECK_THROWS_WITH_AS(comms[r].all_reduce(d, dp::dist::reduce_op::sum), expect, dp::value_error);
    }
  });
  CHECK(f.to_vector() == std::vector<float>(1024, 1.f));  // nothing written
  CHECK(d.to_vector() == std::vector<double>(1024, 1.0));
  std::vector<dp::tensor<float>> x{dp::ones<float>({8}), dp::ones<float>({8})};
  on_ranks(2, [&](int r) {
    CHECK_THROWS_WITH_AS(comms[r].all_reduce(x[r], r == 0 ? dp::dist::reduce_op::sum : dp::dist::reduce_op::max),
                         doctest::Contains("all_reduce: rank 1 reduces by max but rank 0 by sum"), dp::value_error);
  });
  on_ranks(2, [&](int r) {
    CHECK_THROWS_WITH_AS(comms[r].broadcast(x[r], r), doctest::Contains("broadcast: rank 1 names root 1 but rank 0"),
                         dp::value_error);
  });
  on_ranks(2, [&](int r) {  // the group is usable after the refusals
    auto y = dp::full<float>({8}, static_cast<float>(r + 1));
    comms[r].all_reduce(y, dp::dist::reduce_op::sum);
    CHECK(y.to_vector() == std::vector<float>(8, 3.f));
  });
  CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(30));
}

TEST_CASE("a refused collective keeps the ranks in step: each rank's next call meets the others' next call") {
  // The rank that arrives last leaves the rendezvous first. It used to throw at once and post its
  // next call's buffer while the other still read the sizes: that rank then saw equal sizes, summed
  // the wrong buffers and paired its second rendezvous with the next call (37 of 200 rounds).
  auto comms = dp::dist::make_local_communicators(2, {.timeout = std::chrono::milliseconds(5000)});
  int refused[2] = {0, 0}, right[2] = {0, 0};
  on_ranks(2, [&](int r) {
    for (int round = 0; round < 200; ++round) {
      auto bad = dp::ones<float>({r == 0 ? 4 : 6});
      if (r == 1) {
        std::this_thread::sleep_for(std::chrono::microseconds(200 + 10 * (round % 20)));
      }
      try {
        comms[r].all_reduce(bad, dp::dist::reduce_op::sum);
      } catch (const dp::value_error&) {
        ++refused[r];
      } catch (const dp::runtime_error&) {  // aborted by the other rank, out of step
        return;
      }
      auto good = dp::full<float>({4}, static_cast<float>(round + 10 * r));
      try {
        comms[r].all_reduce(good, dp::dist::reduce_op::sum);
      } catch (const dp::error&) {  // out of step: a refusal, or the other rank's call never came
        comms[r].abort("out of step");
        return;
      }
      right[r] += good.to_vector() == std::vector<float>(4, static_cast<float>(2 * round + 10));
    }
  });
  CHECK(refused[0] == 200);
  CHECK(refused[1] == 200);
  CHECK(right[0] == 200);
  CHECK(right[1] == 200);
}

TEST_CASE("a barrier that completes as the timeout expires ends the same way on every rank") {
  // A waiter used to time out a barrier the last rank had just completed (that rank went on, and
  // wrote into buffers whose call had failed). Rank 1 arrives within 0.6 ms of the 20 ms timeout,
  // in 12 us steps: the window was about 0.1 ms wide.
  auto comms = dp::dist::make_local_communicators(2, {.timeout = std::chrono::milliseconds(20)});
  int differ = 0, timed_out = 0;
  for (int round = 0; round < 100; ++round) {
    bool threw[2] = {false, false};
    std::latch start(2);
    on_ranks(2, [&](int r) {
      start.arrive_and_wait();
      if (r == 1) {
        std::this_thread::sleep_for(std::chrono::microseconds(19'400 + 12 * round));
      }
      try {
        comms[r].barrier();
      } catch (const dp::runtime_error&) {
        threw[r] = true;
      }
    });
    differ += threw[0] != threw[1];
    timed_out += threw[0] && threw[1];
    comms[0].recover();
  }
  CHECK(differ == 0);
  MESSAGE(timed_out, " of 100 barriers timed out on both ranks");
}

TEST_CASE("a collective whose peers never arrive times out naming the collective and the missing ranks") {
  auto comms = dp::dist::make_local_communicators(2, {.timeout = std::chrono::milliseconds(200)});
  auto t = dp::ones<float>({3});
  CHECK_THROWS_WITH_AS(comms[0].all_reduce(t, dp::dist::reduce_op::sum),
                       doctest::Contains("all_reduce timed out on rank 0 of 2 after 200 ms. missing: rank(s) 1 (not in "
                                         "this collective"),
                       dp::runtime_error);
  comms[0].recover();
  // Of three ranks, two wait and the third never comes: both name rank 2 (the second through the abort).
  auto three = dp::dist::make_local_communicators(3, {.timeout = std::chrono::milliseconds(200)});
  std::latch start(2);  // both in the call together, however late a thread starts
  on_ranks(2, [&](int r) {
    auto x = dp::ones<float>({3});
    start.arrive_and_wait();
    CHECK_THROWS_WITH_AS(three[r].all_reduce(x, dp::dist::reduce_op::sum),
                         doctest::Contains("of 3 after 200 ms. missing: rank(s) 2 (not in this collective"),
                         dp::runtime_error);
  });
}

TEST_CASE("a timeout outside (0, a year] is refused where communicators are made, naming it") {
  using std::chrono::milliseconds;
  // milliseconds::max() overflowed the nanosecond deadline into the past: every collective timed out at once.
  for (const milliseconds bad :
       {milliseconds(0), milliseconds(-5), milliseconds::max(), dp::dist::max_timeout + milliseconds(1)}) {
    CAPTURE(bad.count());
    const std::string said = "local communicator: the timeout is " + std::to_string(bad.count()) +
                             " ms; expected more than 0 and at most dp::dist::max_timeout";
    CHECK_THROWS_WITH_AS((void)dp::dist::make_local_communicators(2, {.timeout = bad}), doctest::Contains(said.c_str()),
                         dp::value_error);
    CHECK_THROWS_WITH_AS((dp::parallel<tiny>{tiny{}, {dp::cpu(0), dp::cpu(1)}, {.comm = {.timeout = bad}}}),
                         doctest::Contains("parallel_options::comm: the timeout is"), dp::value_error);
  }
  CHECK(dp::dist::make_local_communicators(2, {.timeout = dp::dist::max_timeout}).size() == 2);
}

TEST_CASE("a started all-reduce completes at start on the local communicator; mean is refused") {
  auto comms = dp::dist::make_local_communicators(2);
  std::vector<dp::tensor<float>> t{dp::full<float>({5}, 1.0f), dp::full<float>({5}, 2.0f)};
  on_ranks(2, [&](int r) {
    auto q = comms[r].start_all_reduce(t[r], dp::dist::reduce_op::sum);
    CHECK(comms[r].test(q));
    comms[r].wait(q);
  });
  CHECK(t[0].to_vector() == std::vector<float>(5, 3.0f));
  CHECK(t[1].to_vector() == std::vector<float>(5, 3.0f));
  CHECK_THROWS_WITH_AS((void)comms[0].start_all_reduce(t[0], dp::dist::reduce_op::mean),
                       doctest::Contains("takes sum, max or min"), dp::value_error);
}

TEST_CASE("any_communicator carries every collective and request of the communicator it erases") {
  static_assert(dp::dist::communicator<dp::dist::any_communicator>);
  auto locals = dp::dist::make_local_communicators(3);
  std::vector<dp::dist::any_communicator> comms;
  for (auto& c : locals) {
    comms.emplace_back(std::move(c));
  }
  CHECK(comms[1].rank() == 1);
  CHECK(comms[1].size() == 3);
  CHECK(comms[0].name() == "local communicator");
  std::vector<dp::tensor<double>> d(3), g(3);
  std::vector<dp::tensor<std::int64_t>> b(3);
  std::vector<dp::tensor<float>> s(3);
  for (int r = 0; r < 3; ++r) {
    d[r] = dp::full<double>({4}, r + 1.0);
    g[r] = dp::zeros<double>({12});
    b[r] = dp::full<std::int64_t>({2}, r * 10);
    s[r] = dp::full<float>({3}, float(r));
  }
  on_ranks(3, [&](int r) {
    comms[r].all_gather(d[r], g[r]);
    comms[r].all_reduce(d[r], dp::dist::reduce_op::max);
    comms[r].broadcast(b[r], 2);
    auto q = comms[r].start_all_reduce(s[r], dp::dist::reduce_op::sum);
    comms[r].wait(q);
    comms[r].barrier();
  });
  CHECK(g[1].to_vector() == std::vector<double>{1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3});
  CHECK(d[0].to_vector() == std::vector<double>(4, 3.0));
  CHECK(b[0].to_vector() == std::vector<std::int64_t>{20, 20});
  CHECK(s[2].to_vector() == std::vector<float>(3, 3.0f));
}

TEST_CASE("abort through any_communicator releases a rank waiting in a collective at once") {
  auto locals = dp::dist::make_local_communicators(2, {.timeout = std::chrono::seconds(60)});
  dp::dist::any_communicator a{std::move(locals[0])}, b{std::move(locals[1])};
  const auto t0 = std::chrono::steady_clock::now();
  std::thread waiter(
      [&] { CHECK_THROWS_WITH_AS(a.barrier(), doctest::Contains("rank 1 gave up"), dp::runtime_error); });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  b.abort("rank 1 gave up");
  waiter.join();
  CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(10));
  a.recover();
  on_ranks(2, [&](int r) { (r == 0 ? a : b).barrier(); });  // clean again
}
