// NCCL: the communicator over one GPU per rank (bootstrapped by dist::session), the same interface
// as the host communicators (dp::parallel over NCCL is in parallel.cu). Built in CI with dp::nccl
// (and dp::mpi), run when a GPU is lent.
#include <chrono>

#include <doctest/doctest.h>

#include <dp/dp.hpp>

namespace dist = dp::dist;

namespace {
int argc_ = 1;
char arg0_[] = "dp_test_nccl";
char* argv0_[] = {arg0_, nullptr};
char** argv_ = argv0_;

dist::session& world() {
  static dist::session s{argc_, argv_};
  return s;
}
}  // namespace

TEST_CASE("the NCCL communicator of a session implements every collective, blocking and started") {
  dist::nccl_communicator c = world().make_nccl_communicator(0, {.timeout = std::chrono::seconds(20)});
  CHECK(c.size() == world().size());
  const float n = static_cast<float>(c.size());
  dp::tensor<float> t = dp::full<float>({1000}, 2.0f, dp::cuda(0));
  c.all_reduce(t, dist::reduce_op::sum);
  CHECK(t.to(dp::cpu()).to_vector()[999] == 2.0f * n);
  dp::tensor<double> d = dp::full<double>({7}, 3.0, dp::cuda(0));
  auto q = c.start_all_reduce(d, dist::reduce_op::sum);
  c.wait(q);
  CHECK(d.to(dp::cpu()).to_vector()[6] == 3.0 * n);
  CHECK(c.test(q));  // a waited request is done
  dp::tensor<std::int64_t> b = dp::full<std::int64_t>({3}, world().rank() == 0 ? 5 : 9, dp::cuda(0));
  c.broadcast(b, 0);
  CHECK(b.to(dp::cpu()).to_vector()[2] == 5);
  dp::tensor<float> all = dp::zeros<float>({4 * c.size()}, dp::cuda(0));
  c.all_gather(dp::full<float>({4}, 1.0f, dp::cuda(0)), all);
  CHECK(dp::sum(all).item() == doctest::Approx(4.0 * n));
  std::vector<float> mine, expect;
  for (int r = 0; r < c.size(); ++r) {
    mine.insert(mine.end(), {100.0f * c.rank() + r, 1.0f});  // this rank's block for rank r
    expect.insert(expect.end(), {100.0f * r + c.rank(), 1.0f});
  }
  dp::tensor<float> swapped = dp::zeros<float>({2 * c.size()}, dp::cuda(0));
  c.all_to_all(dp::from_vector(mine).to(dp::cuda(0)), swapped);
  CHECK(swapped.to(dp::cpu()).to_vector() == expect);
  c.barrier();
  dist::any_communicator erased{c};
  auto e = erased.start_all_reduce(t, dist::reduce_op::max);
  erased.wait(e);
  CHECK(t.to(dp::cpu()).to_vector()[0] == 2.0f * n);
}

TEST_CASE("an aborted NCCL communicator refuses its next collective with the reason") {
  dist::nccl_communicator c = world().make_nccl_communicator(0, {});
  c.abort("replica 1 failed: test");
  dp::tensor<float> t = dp::zeros<float>({4}, dp::cuda(0));
  CHECK_THROWS_WITH_AS(c.all_reduce(t, dist::reduce_op::sum), doctest::Contains("aborted: replica 1 failed: test"),
                       dp::runtime_error);
}
