// The MPI communicator's own rules, checked on every rank of the job.
#include <cstdint>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include "world.hpp"

TEST_CASE(
    "collectives whose blocks together pass 2^31-1 elements are refused on every rank; the communicator goes on") {
  // Open MPI indexes the whole of an all-gather's output (rank x count) in int: a block under the
  // limit whose whole is past it once reached MPI. The tensors are never written, so their pages
  // are never touched: 8 GiB of address space each, not of memory.
  const int n = test::world().size();
  const dp::index_t block = INT32_MAX / n + 1, whole = block * n;
  auto c = test::world().make_communicator({});
  const std::string rule =
      "dp: an MPI collective moves at most 2^31-1 elements at once (every rank's blocks together), got " +
      std::to_string(whole) + " (" + std::to_string(block) + " per rank)";
  {
    dp::tensor<float> in = dp::empty<float>({block}), out = dp::empty<float>({whole}), out2 = dp::empty<float>({whole});
    CHECK_THROWS_WITH_AS(c.all_gather(in, out), doctest::Contains(rule.c_str()), dp::value_error);
    CHECK_THROWS_WITH_AS(c.reduce_scatter(out, in, dp::dist::reduce_op::sum), doctest::Contains(rule.c_str()),
                         dp::value_error);
    CHECK_THROWS_WITH_AS(c.all_to_all(out, out2), doctest::Contains(rule.c_str()), dp::value_error);
  }
  // Nothing was started: the ranks are still in step.
  dp::tensor<float> t = dp::full<float>({3}, static_cast<float>(test::world().rank() + 1));
  c.all_reduce(t, dp::dist::reduce_op::sum);
  const auto sum = static_cast<float>(n * (n + 1)) / 2.0f;  // 1 + 2 + ... + n
  CHECK(t.to_vector() == std::vector<float>{sum, sum, sum});
}
